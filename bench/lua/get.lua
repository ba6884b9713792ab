-- GET one fixed path (introspection, a pre-created action's status, the bare app).
wrk.method = "GET"
wrk.path = os.getenv("BENCH_PATH") or "/"
