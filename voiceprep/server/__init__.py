"""`voiceprep serve`: the cache as an OpenAI-compatible speech server.

Imported only by `voiceprep serve` (and tests): it needs the `voiceprep[serve]` extra
(Starlette, uvicorn, prometheus-client). The modules, one job each:

    options.py   ServeOptions: every serve setting in one place (flags > env > [serve] > defaults)
    voices.py    VoiceMap: the request's `voice` → the backend's voice (400 when unknown)
    request.py   SpeechRequest: OpenAI's JSON body, validated (ApiError on anything bad)
    errors.py    ApiError: an HTTP status plus OpenAI's error shape
    formats.py   response formats: PCM → mp3/opus/aac/flac/ulaw/alaw/wav/pcm with PyAV,
                 whole (a hit) or chunk by chunk (StreamEncoder, a miss)
    sse.py       OpenAI's stream_format "sse" events
    service.py   SpeechService: hits, streamed single-flight misses (fill's Flight), the
                 bounded synthesis queue, encoded variants of hits
    metrics.py   Prometheus counters and histograms on a registry of the app's own
    logs.py      the log's promises: request text scrubbed, uvicorn's lines we replace
    protocol.py  uvicorn's h11 protocol answering h11's refusals (431) readably
    app.py       the ASGI app: the speech route, auth, body limit and timeout, access
                 log, error shapes; Starlette for the other routes
    run.py       uvicorn on a socket we bind; SIGTERM/Ctrl-C drain (bounded), then return
"""
