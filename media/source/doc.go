// Package source owns the camera side of recording: it turns a camera URL
// into a stream of h264.Frame values (one access unit each, Annex-B, with a
// wall-clock time and its Codec; a keyframe's Data starts with SPS and PPS,
// for H.265 with VPS, SPS and PPS).
//
// Three schemes are understood:
//
//	rtsp://[user:pass@]host[:port]/path
//	    RTSP/1.0 with RTP interleaved over the TCP connection by default
//	    (it crosses NAT and firewalls like the control channel does), or
//	    over a UDP port pair (Options.Transport: udp, or auto with a
//	    fallback to TCP), Basic or Digest (RFC 2617/7616, SHA-256 or MD5,
//	    qop=auth) authentication, H.264 per RFC 6184 (single NAL, STAP-A,
//	    FU-A) or H.265 per RFC 7798 (single NAL, AP, FU, PACI; without
//	    DONL, and a camera that sends it is refused; keyframes are IRAP
//	    pictures). A source reconnects by itself with capped exponential
//	    backoff; loss makes it drop the damaged access unit and wait for
//	    the next keyframe rather than emit a corrupt one.
//
//	rtsps://[user:pass@]host[:port]/path
//	    The same over TLS (port 322 by default), RTP always interleaved on
//	    the TLS connection (no SRTP). The camera's key is pinned
//	    (Fingerprint; learned on first use through Options.TLS.OnPin) or
//	    its chain verified against Options.TLS.RootCAs; a pinned camera
//	    that shows another key fails with ErrCertChanged and is not
//	    retried.
//
// Over UDP, datagrams from anywhere but the camera's address (and the
// server_port it named) are dropped and counted; packets pass a reorder
// window (64 packets, 50 ms) before the depacketizer; RTCP receiver
// reports go back every 5 s.
//
//	synthetic:[?fps=N][&pace=none][&scale=K][&codec=h264|h265]
//	    The embedded fixture clip (media/clip), in H.264 or H.265, looped
//	    forever with fresh timestamps, for demos, tests and benchmarks.
//
// What it never does: decode video, write to disk, or let a camera's
// password reach an error, a Stats value or a log line (use Redact when
// printing a URL). Every byte read from a camera is treated as hostile:
// header sizes and counts, message bodies and interleaved frames are
// bounded, and malformed input is an error, never a panic.
//
// It imports nothing of Custos's but media/h264, media/h265 and media/clip.
package source
