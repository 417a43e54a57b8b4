// Package rtc owns the console's live view in the browser: it turns a
// camera's live MPEG-TS (what node.LiveVia writes) into one WebRTC video
// track for one browser, with the H.264 passed through untouched — nothing is
// decoded or re-encoded, so a browser viewer costs the node a demux and a
// packetizer, not an encoder.
//
// One Peer serves one browser in one WHEP-style exchange: the browser POSTs
// its offer, Answer returns the answer with every candidate already in it (no
// trickle), and Feed demuxes the stream (go-astits reads the TS packets; the
// PES and the two tables Custos needs are read here, so an access unit is sent
// as soon as its last packet arrives, not when the next one starts) and sends
// each access unit with an RTP timestamp taken from its PTS. It starts at a
// key frame, and when the browser or the network falls behind it drops whole
// frames up to the next key frame (counted in Stats) instead of queueing
// without bound.
//
// It never reaches past this machine: candidates are gathered on the loopback
// interface only (127.0.0.1, UDP), mDNS is off, no STUN or TURN server is
// named, and candidates of the browser that are not loopback addresses are
// ignored, so nothing is ever sent to another address; should pion try, the
// sockets it is given refuse (and count, Stats.Refused) any send that is not
// to loopback. The browser therefore runs on the node's own machine.
//
// Only H.264 plays: it is the one video codec every browser decodes over
// WebRTC (H.265 only some, and only in hardware), and transcoding is what this
// package exists to avoid. A stream of another codec makes Feed return
// ErrNotPlayable with a sentence for the viewer.
//
// A console handler does, in outline (ctx is the console's, not the
// request's, which ends with the answer):
//
//	p, err := rtc.New(rtc.Config{})
//	answer, err := p.Answer(offer) // 201 Created, Content-Type application/sdp
//	go func() {
//		defer p.Close()
//		pr, pw := io.Pipe()
//		go func() { _, err := node.LiveVia(ctx, dir, camera, pw); pw.CloseWithError(err) }()
//		err := p.Feed(ctx, pr) // errors.Is(err, rtc.ErrNotPlayable): show err's text
//		pr.CloseWithError(err) // ends LiveVia's copy
//	}()
//
// It knows nothing of who may watch what: the console authorizes the viewer
// and opens the live stream (which the store authorizes and audits) before a
// Peer sees a byte.
package rtc
