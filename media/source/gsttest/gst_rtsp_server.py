#!/usr/bin/python3
"""A real RTSP server for the tests (gsttest.Start runs it): serves an H.264 clip in Matroska
at rtsp://127.0.0.1:PORT/clip, paced by the container's timestamps. (A raw
.h264 file will not do: h264parse paces it but leaves PTS unset, so every
RTP packet gets the same timestamp. The test remuxes the fixture with
`ffmpeg -c copy`, which leaves the NAL units untouched.) Each client gets
its own pipeline, so it starts at frame 0.

usage: gst_rtsp_server.py PORT CLIP.mkv [h264|h265]   (prints READY when listening)

With h265 the clip is H.265, payloaded by rtph265pay (RFC 7798).
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstRtsp", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

port, clip = sys.argv[1], sys.argv[2]
codec = sys.argv[3] if len(sys.argv) > 3 else "h264"
if codec not in ("h264", "h265"):
    sys.exit("gst_rtsp_server: codec must be h264 or h265")
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
factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
server.get_mount_points().add_factory("/clip", factory)
if server.attach(None) == 0:
    sys.exit("gst_rtsp_server: cannot listen on port " + port)
print("READY", flush=True)
GLib.MainLoop().run()
