"""`voiceprep serve`: the cache as an OpenAI-compatible speech server.

Imported only by `voiceprep serve` (and tests): it needs the `voiceprep[serve]` extra
(Starlette, uvicorn, prometheus-client). The modules, one job each:

    options.py   ServeOptions: every serve setting in one place (flags > env > [serve] > defaults)
    voices.py    VoiceMap: the request's `voice` → the backend's voice (400 when unknown)
    request.py   SpeechRequest: OpenAI's JSON body, validated (ApiError on anything bad)
    errors.py    ApiError: an HTTP status plus OpenAI's error shape
    formats.py   response formats: PCM → mp3/opus/aac/flac/wav/pcm bytes with PyAV
    service.py   SpeechService: hits, single-flight misses, the bounded synthesis queue,
                 encoded variants of hits
    metrics.py   Prometheus counters and histograms on a registry of the app's own
    app.py       the Starlette app: routes, auth, body limit, access log, error shapes
    run.py       uvicorn on a socket we bind; SIGTERM/Ctrl-C drain, then return
"""
