"""`charrnn serve`: models kept loaded behind an HTTP API (OpenAI's completions, SSE streaming, metrics).

    worker.py    one thread per model: the generation engine's batch, requests joining and leaving it
    protocol.py  what a request may ask, checked and bounded; OpenAI-shaped errors and responses
    app.py       the Starlette app: routes, API key, CORS, metrics, the playground page
    run.py       loading the checkpoints, the port check, uvicorn and a prompt shutdown

Needs the `serve` extra (starlette, uvicorn, prometheus_client); nothing here is imported by the rest of
charrnn.
"""
