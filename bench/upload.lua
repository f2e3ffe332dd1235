-- wrk script for bench/run.py's "upload" workload: every request POSTs the same 64 KiB body
-- (Content-Length framed) to /upload, whose app reads it whole and answers with its length.
wrk.method = "POST"
wrk.path = "/upload"
wrk.body = string.rep("0123456789abcdef", 4096)
wrk.headers["Content-Type"] = "application/octet-stream"
