"""Which classifier goes with a policy: the one its ``classifier`` key names, else the configured one.

Every entrypoint that routes or plans (the router, ``thinkroute classify`` / ``calibrate`` / ``eval``, the
submit-time planner) opens its (classifier, policy) pair here, so a policy for a custom classifier is never
checked against, or decided with, the shipped one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from workers.classifier.model import Classifier
from workers.errors import ConfigError
from workers.router.decide import needs_embeddings
from workers.router.policy import Policy, check_policy, load_policy
from workers.settings import Settings

Loader = Callable[[Path], Classifier]


def default_artifact(s: Settings, progress: bool = False) -> Path:
    """The configured artefact (``ROUTER__ARTIFACT_DIR``), else the cached shipped one (built on first use)."""
    from workers.classifier.cache import ensure_artifact

    return s.router.artifact_dir or ensure_artifact(s.cache_dir, progress=progress)


def loader(s: Settings, embeddings: bool) -> Loader:
    """Opens an artefact dir with the router's providers, threads and first tier; ``embeddings``: with the
    sentence embedding exposed (a classifier loaded so sends every prompt that asks for it to the encoder)."""

    def load(artifact: Path) -> Classifier:
        r = s.router
        return Classifier.load(
            artifact,
            providers=r.providers,
            intra_op_threads=r.intra_op_threads,
            embeddings=embeddings,
            first_tier=r.first_tier,
        )

    return load


def artifact_for(policy: Policy, default: Callable[[], Path]) -> Path:
    """The artefact dir a policy is decided with (``default`` is only called when the policy names none)."""
    return Path(policy.classifier) if policy.classifier is not None else default()


def open_pair(policy: Policy, default: Callable[[], Path], load: Loader, where: str = "") -> Classifier:
    """The policy's classifier, loaded; a ConfigError (and nothing left open) if the policy does not fit its
    labels."""
    classifier = load(artifact_for(policy, default))
    try:
        check_policy(policy, classifier.labels, where)
    except ConfigError:
        classifier.close()
        raise
    return classifier


def load_routing(
    s: Settings,
    policy_path: Path | None,
    embeddings: bool | None = None,
    default: Callable[[], Path] | None = None,
) -> tuple[Classifier, Policy]:
    """The (classifier, policy) pair of a policy file (the shipped table when None). ``embeddings``: load the
    classifier with sentence embeddings (then every prompt goes to the encoder); None: as the router does, only
    when the policy's gain head reads them (else the first tier decides the prompts it is sure of).
    ``default``: the artefact dir for a policy that names none (None: ``default_artifact``, built quietly on
    first use; pass ``lambda: default_artifact(s, progress=True)`` to show the build's progress)."""
    policy = load_policy(policy_path)
    if embeddings is None:
        embeddings = needs_embeddings(policy)
    artifact = default or (lambda: default_artifact(s))
    classifier = open_pair(policy, artifact, loader(s, embeddings), str(policy_path or policy.version))
    return classifier, policy
