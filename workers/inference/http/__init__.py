"""ThinkRoute's own ``httpx.AsyncBaseTransport`` for the LLM calls (`transport`, `connection`, `http1`): kept
because the inference worker spends about 30% less CPU per result on it than on the best library under httpx.

Side by side (``python -m loadgen.bench_inference --count 4000 --rounds 4`` with one ``--variant`` per
transport, interleaved a b c a b c, three runs: 12 rounds each, the same routed file, zero-latency replay
server; 2-vCPU shared machine, load average 1.4-3.9 from other test runs), CPU per result, median (range):

================  ====================  ====================  ====================
process           own (``asyncio``)     httpx-aiohttp 0.2.0   httpcore shards
================  ====================  ====================  ====================
inference worker  0.47 ms (0.30-0.56)   0.65 (0.49-0.86)      1.11 (0.74-1.40)
replay server     0.32 (0.22-0.38)      0.33 (0.26-0.44)      0.36 (0.32-0.48)
Valkey            0.044 (0.028-0.053)   0.048 (0.035-0.060)   0.046 (0.040-0.052)
Tansu             0.010 (0.005-0.012)   0.010 (0.008-0.013)   0.011 (0.008-0.022)
================  ====================  ====================  ====================

The worker's CPU against the own transport's in the same round: aiohttp 1.48x (1.19-1.97), httpcore 2.48x
(1.62-3.56); results/s (load-sensitive) 1,109 (826-2,914), 849 (575-1,724), 720 (350-1,284). The transports
alone (`workers.inference.client.LLMClient`, 64 requests in flight, uvloop): 0.19-0.24 ms of CPU per request
own, 0.28-0.36 aiohttp after a first round of 0.48 (0.29-0.38 with aiohttp's cookie jar off), 0.83-0.96
httpcore. aiohttp's parser is C too; a profile puts the difference in running two client stacks per request
(httpx builds the request, httpx-aiohttp turns it into an aiohttp one, aiohttp's ``ClientSession._request``
runs, and its response goes back to httpx as a stream), where this transport parses in the protocol callback
and hands httpx the whole body.

httpx-aiohttp also reports errors in classes `workers.inference.client` does not expect: a malformed status
line escapes as ``aiohttp.ClientResponseError`` (not an ``httpx`` error), and a server that closes before
responding (``ServerDisconnectedError``) becomes ``httpx.ConnectTimeout``.
``INFERENCE__HTTP_TRANSPORT=httpcore`` stays for what this transport does not do (HTTP proxies).
"""
