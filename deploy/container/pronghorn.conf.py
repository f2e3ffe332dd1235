"""pronghorn settings inside the container image: deploy/container/Containerfile copies this file to
/etc/pronghorn/pronghorn.conf.py. Guide: docs/deploy-container.md
"""

# Every interface of the container's own network namespace; publish it with -p 8000:8000.
bind = ["0.0.0.0:8000"]

# No `workers` here: the WEB_CONCURRENCY environment variable sets it (2 in the image;
# docker run -e WEB_CONCURRENCY=4, or a Kubernetes env entry, changes it).

# Logs go where the container runtime collects them: errors to stderr (the default) and one line
# per request to stdout.
accesslog = "-"
errorlog = "-"

# docker stop and podman stop send SIGTERM, then SIGKILL 10 s later unless told otherwise
# (--stop-timeout, --time, Kubernetes' terminationGracePeriodSeconds): workers get 8 s to finish
# their requests, so that the master has stopped them before the SIGKILL.
graceful_timeout = 8
