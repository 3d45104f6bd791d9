"""A real RTSP server for the tests: GStreamer's gst-rtsp-server through Python GI, on 127.0.0.1 only.

    python3 rtsp_server.py PORT [--check]

serves a generated live video (videotestsrc, H.264) at rtsp://127.0.0.1:PORT/test and prints
"ready" once it listens. ``--check`` only tests that GI, the RTSP server and every element the
pipeline needs exist (exit 0), or prints what is missing (exit 1). Run it with a Python that has
the GI bindings (Debian: python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,ugly});
the test finds one and skips with the reason when there is none.
"""
import signal
import sys

ELEMENTS = ("videotestsrc", "videoconvert", "x264enc", "rtph264pay")
PIPELINE = ("( videotestsrc is-live=true pattern=ball ! video/x-raw,width=64,height=64,framerate=25/1 ! "
            "videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 bframes=0 ! "
            "rtph264pay name=pay0 pt=96 config-interval=1 )")


def main() -> int:
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtspServer
    except (ImportError, ValueError) as e:
        print(f"missing: GStreamer RTSP server GI bindings ({e})")
        return 1
    Gst.init(None)
    missing = [e for e in ELEMENTS if Gst.ElementFactory.find(e) is None]
    if missing:
        print(f"missing: GStreamer elements {', '.join(missing)}")
        return 1
    if "--check" in sys.argv:
        print("ok")
        return 0
    port = sys.argv[1]
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")  # loopback only
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE)
    factory.set_shared(True)
    server.get_mount_points().add_factory("/test", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}")
        return 1
    loop = GLib.MainLoop()
    signal.signal(signal.SIGTERM, lambda *a: loop.quit())
    print("ready", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
