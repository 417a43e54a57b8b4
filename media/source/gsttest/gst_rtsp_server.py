#!/usr/bin/python3
"""A real RTSP server for the tests (gsttest.Start runs it): serves an H.264 or H.265 clip in Matroska
at rtsp://127.0.0.1:PORT/clip, paced by the container's timestamps. (A raw
.h264 file will not do: h264parse paces it but leaves PTS unset, so every
RTP packet gets the same timestamp. The test remuxes the fixture with
`ffmpeg -c copy`, which leaves the NAL units untouched.) Each client gets
its own pipeline, so it starts at frame 0.

usage: gst_rtsp_server.py PORT CLIP.mkv [--codec h264|h265] [--protocols tcp|udp|both]
         [--auth basic|digest --user U --password P] [--timeout SECONDS]
         [--tls CERT_AND_KEY.pem]   (prints READY when listening)

--codec h265: the clip is H.265, payloaded by rtph265pay (RFC 7798).
--timeout sets each session's timeout, and expired sessions are cleaned up
every second, so a client that does not keep its session alive loses it.
--tls serves rtsps (every connection is TLS).
"""
import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstRtsp", "1.0")
from gi.repository import Gio, GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("port")
ap.add_argument("clip")
ap.add_argument("--codec", default="h264", choices=["h264", "h265"])
ap.add_argument("--protocols", default="tcp", choices=["tcp", "udp", "both"])
ap.add_argument("--auth", choices=["basic", "digest"])
ap.add_argument("--user", default="")
ap.add_argument("--password", default="")
ap.add_argument("--timeout", type=int, default=0)
ap.add_argument("--tls")
args = ap.parse_args()
port, clip, codec = args.port, args.clip, args.codec
Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
# config-interval=0: pass the clip's own in-band parameter sets through untouched.
factory.set_launch(
    "( filesrc location=%s ! matroskademux ! %sparse ! rtp%spay name=pay0 pt=96 config-interval=0 )"
    % (clip.replace(" ", "\\ "), codec, codec)
)
factory.set_shared(False)
factory.set_protocols(
    {
        "tcp": GstRtsp.RTSPLowerTrans.TCP,
        "udp": GstRtsp.RTSPLowerTrans.UDP,
        "both": GstRtsp.RTSPLowerTrans.UDP | GstRtsp.RTSPLowerTrans.TCP,
    }[args.protocols]
)
if args.auth or args.tls:
    auth = GstRtspServer.RTSPAuth()
    if args.tls:
        with open(args.tls) as f:
            auth.set_tls_certificate(Gio.TlsCertificate.new_from_pem(f.read(), -1))
    if args.auth:
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        if args.auth == "basic":
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        else:
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
            auth.add_digest(args.user, args.password, token)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_permission_for_role("user", "media.factory.access", True)
        perms.add_permission_for_role("user", "media.factory.construct", True)
        factory.set_permissions(perms)
    else:
        # TLS only: everyone may watch, as without RTSPAuth.
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "anonymous")
        auth.set_default_token(token)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_permission_for_role("anonymous", "media.factory.access", True)
        perms.add_permission_for_role("anonymous", "media.factory.construct", True)
        factory.set_permissions(perms)
    server.set_auth(auth)
if args.timeout > 0:

    def new_session(client, session):
        session.set_timeout(args.timeout)

    def keepalive(client, ctx):
        print("KEEPALIVE", flush=True)

    def connected(srv, client):
        client.connect("new-session", new_session)
        # GStreamer does not expire a session while its client stays
        # connected, so the test counts the keep-alives themselves.
        client.connect("get-parameter-request", keepalive)

    server.connect("client-connected", connected)

    def cleanup():
        n = server.get_session_pool().cleanup()
        if n:
            print("EXPIRED %d" % n, flush=True)
        return True

    GLib.timeout_add_seconds(1, cleanup)
server.get_mount_points().add_factory("/clip", factory)
if server.attach(None) == 0:
    sys.exit("gst_rtsp_server: cannot listen on port " + port)
print("READY", flush=True)
GLib.MainLoop().run()
