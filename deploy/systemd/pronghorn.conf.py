"""pronghorn settings for deploy/systemd/pronghorn.service; install as
/etc/pronghorn/pronghorn.conf.py.

No `bind` here: the sockets come from pronghorn.socket, and pronghorn ignores `bind` when systemd
hands it sockets. Guide: docs/deploy-systemd.md
"""

# One worker per core is right for apps that compute; add `threads` for apps that wait on I/O.
workers = 4

# Seconds a stopping or reloaded worker gets to finish its requests. pronghorn.service's
# TimeoutStopSec (40) must stay a few seconds above it.
graceful_timeout = 30

# Both logs go to the journal: errors on stderr (the default), one line per request on stdout.
accesslog = "-"

# nginx on the Unix socket is trusted for X-Forwarded-Proto (the request's scheme) without further
# setting: peers on a Unix socket always are. List its address here if it connects over TCP instead.
# forwarded_allow_ips = "127.0.0.1"
