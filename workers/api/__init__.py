"""``thinkroute serve``: the OpenAI Files and Batches API over HTTP (Starlette on uvicorn).

``app`` the routes and their error handling; ``middleware`` keys, body limits, metrics, the last word on
errors; ``auth`` the keys; ``files`` and ``batches`` the routes; ``render`` a job as OpenAI's batch object;
``planner`` the planning pass a batch's metadata asks for; ``intakes`` the batches' intakes in the
background; ``sweeper`` expiry, settling and finalizing; ``serve`` the process. The wire formats are
``schemas.api``, the OpenAPI document ``schemas.openapi``."""
