package rtc

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

const (
	ptsMask = 1<<33 - 1
	// maxStep is the largest PTS step taken as real (a camera that paused,
	// frames dropped upstream); a larger one, or a step backwards, is a
	// clock jump, and the RTP clock advances by the last real step.
	maxStep = 60 * 90000
	// defaultStep is the step assumed before two frames were seen.
	defaultStep = 90000 / 25
)

// sendState is the RTP side of a Peer; it outlives one Feed, so a second
// Feed (the live stream reopened) continues the same RTP stream.
type sendState struct {
	pay      codecs.H264Payloader // keeps the SPS and PPS to send them as one STAP-A
	seq      uint16
	rtpTS    uint32
	lastPTS  uint64
	lastStep uint32
	started  bool
	waitKey  bool
}

// Feed demuxes ts, a live MPEG-TS stream with H.264 video, and sends each
// access unit to the browser with an RTP timestamp taken from its PTS, so
// each frame keeps its real duration. It sends nothing before the browser is
// connected and then starts at a key frame. It reads the stream as it comes
// and does not pace it: ts must be live.
//
// Feed returns nil when ts ends or ctx ends, ErrClosed or ErrFailed when the
// connection ends, an error wrapping ErrNotPlayable as soon as the stream's
// tables say its video is not H.264, and any other error of reading ts. It
// does not wait for a Read of ts that is blocked when it returns: the caller
// ends ts then (closes its pipe, cancels its request), and the reading
// goroutine ends with that Read. One Feed runs at a time.
func (p *Peer) Feed(ctx context.Context, ts io.Reader) error {
	if !p.feeding.CompareAndSwap(false, true) {
		return ErrFeeding
	}
	defer p.feeding.Store(false)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	q := make(chan frame, queueFrames)
	var queued atomic.Int64
	demuxed := make(chan error, 1)
	go func() {
		demuxed <- p.demux(ctx, ts, q, &queued)
		close(q)
	}()

	connectBy := time.NewTimer(p.cfg.ConnectTimeout)
	defer connectBy.Stop()
	connected := false
	tx := &p.tx
	tx.waitKey = true // a browser that joins, or rejoins, needs a key frame first
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.done:
			return p.doneErr
		case <-connectBy.C:
			select {
			case <-p.connected:
			default:
				return fmt.Errorf("rtc: the browser did not connect within %s", p.cfg.ConnectTimeout)
			}
		case f, ok := <-q:
			if !ok {
				return <-demuxed
			}
			queued.Add(-int64(len(f.data)))
			if !connected {
				select {
				case <-p.connected:
					connected = true
				default:
				}
			}
			if !connected || tx.waitKey && !f.key {
				p.skipped.Add(1)
				continue
			}
			tx.waitKey = false
			if err := p.send(f); err != nil {
				// Part of the frame is lost; the browser cannot decode
				// on before the next key frame.
				p.dropped.Add(1)
				tx.waitKey = true
			}
		}
	}
}

// demux reads access units from r into q until r ends or ctx does. When q
// is full (the sender fell behind) it drops frames up to the next key frame
// that fits, so memory stays bounded and the browser decodes on from there.
func (p *Peer) demux(ctx context.Context, r io.Reader, q chan<- frame, queued *atomic.Int64) error {
	d := newDemuxer(ctx, r, p.cfg.MaxFrameBytes)
	skipped := 0
	dropping := false
	for {
		f, err := d.next()
		p.skipped.Add(uint64(d.skipped - skipped))
		skipped = d.skipped
		if err == io.EOF || ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if dropping && !f.key {
			p.dropped.Add(1)
			continue
		}
		if len(q) == cap(q) || queued.Load()+int64(len(f.data)) > int64(p.cfg.QueueBytes) {
			p.dropped.Add(1)
			dropping = true
			continue
		}
		dropping = false
		queued.Add(int64(len(f.data)))
		select {
		case q <- f:
		case <-ctx.Done():
			return nil
		}
	}
}

// send packetizes one access unit (RFC 6184: single NAL units, STAP-A for
// the parameter sets, FU-A for the rest) and writes it to the track. The RTP
// timestamp advances by the access unit's PTS step, which is what writing
// samples with their real durations would give, without holding each frame
// back until the next one tells its duration.
func (p *Peer) send(f frame) error {
	tx := &p.tx
	if !tx.started {
		tx.started = true
		tx.seq = uint16(rand.Uint32())
		tx.rtpTS = rand.Uint32()
		tx.lastStep = defaultStep
	} else {
		step := (f.pts - tx.lastPTS) & ptsMask
		if step == 0 || step > maxStep {
			step = uint64(tx.lastStep)
		}
		tx.lastStep = uint32(step)
		tx.rtpTS += uint32(step)
	}
	tx.lastPTS = f.pts
	if p.beforeSend != nil {
		p.beforeSend(f.pts, tx.rtpTS)
	}
	payloads := tx.pay.Payload(rtpMTU-12, f.data)
	var werr error
	for i, pl := range payloads {
		pkt := &rtp.Packet{
			Header: rtp.Header{
				Version:        2,
				Marker:         i == len(payloads)-1, // the access unit's last packet
				SequenceNumber: tx.seq,
				Timestamp:      tx.rtpTS,
			},
			Payload: pl,
		}
		tx.seq++
		// The track sets the SSRC and payload type it negotiated.
		if err := p.track.WriteRTP(pkt); err != nil && werr == nil {
			werr = err
		}
	}
	if werr != nil {
		return werr
	}
	p.last.Store(&sentStamp{pts: f.pts, rtp: tx.rtpTS})
	p.frames.Add(1)
	p.bytes.Add(uint64(len(f.data)))
	return nil
}
