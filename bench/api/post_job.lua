-- wrk script: POST one small job per request, with the API key from the environment.
wrk.method = "POST"
wrk.body = '{"service_required": "sim", "priority": 60, "payload": {"prompt": "a cat"}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("EMP_BENCH_API_KEY") or "")
