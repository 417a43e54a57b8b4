package rtc

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp/codecs"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/source"
	"github.com/custos-cctv/custos/media/ts"
)

// errEnough stops the camera after the frames a test wants.
var errEnough = errors.New("enough frames")

// sent is one frame the test camera wrote into Feed's stream.
type sent struct {
	f  h264.Frame
	at time.Time // just before its TS bytes were written
}

// camera plays the fixture clip (media/clip, the same bytes as the shared
// fixture) through the synthetic camera with query q (pace, fps), muxes n
// frames to MPEG-TS with the project's muxer and writes each frame's packets
// to w as the node's live view does. It returns what it wrote.
func camera(ctx context.Context, t *testing.T, q string, n int, w io.Writer) []sent {
	t.Helper()
	src, err := source.Open("synthetic:?"+q, source.Options{})
	if err != nil {
		t.Fatalf("open synthetic camera: %v", err)
	}
	var mux ts.Muxer
	var out []sent
	buf := make([]byte, 0, 256<<10)
	err = src.Run(ctx, func(f h264.Frame) error {
		buf = buf[:0]
		if len(out) == 0 {
			buf = mux.AppendTables(buf)
		}
		var err error
		if buf, err = mux.AppendFrame(buf, f); err != nil {
			return err
		}
		out = append(out, sent{f: f, at: time.Now()})
		if _, err := w.Write(buf); err != nil {
			return err
		}
		if len(out) == n {
			return errEnough
		}
		return nil
	})
	if !errors.Is(err, errEnough) && ctx.Err() == nil {
		t.Errorf("camera: %v", err)
	}
	return out
}

// received is one access unit the test's browser put together.
type received struct {
	ts   uint32
	at   time.Time // when its last packet arrived
	data []byte    // Annex-B
}

// goBrowser is a pion peer playing the browser: it offers to receive video
// in every codec pion knows (as a browser offers several) and collects the
// access units of the track it gets.
type goBrowser struct {
	pc   *webrtc.PeerConnection
	tr   *webrtc.RTPTransceiver
	up   chan struct{}
	mu   sync.Mutex
	aus  []received
	lost int // access units that arrived incomplete
}

func newGoBrowser(t *testing.T, codecsOnly ...webrtc.RTPCodecParameters) *goBrowser {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if len(codecsOnly) == 0 {
		if err := m.RegisterDefaultCodecs(); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range codecsOnly {
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			t.Fatal(err)
		}
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		t.Fatal(err)
	}
	var refused atomic.Uint64
	se, err := loopbackOnly(&refused)
	if err != nil {
		t.Fatal(err)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(ir))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	b := &goBrowser{pc: pc, up: make(chan struct{})}
	b.tr, err = pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(b.up) })
		}
	})
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { b.read(tr) })
	return b
}

// offer returns the browser's offer with its candidates (no trickle).
func (b *goBrowser) offer(t *testing.T) string {
	t.Helper()
	o, err := b.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(b.pc)
	if err := b.pc.SetLocalDescription(o); err != nil {
		t.Fatal(err)
	}
	<-gathered
	return b.pc.LocalDescription().SDP
}

// connect runs the exchange with p and waits until both ends are up.
func (b *goBrowser) connect(t *testing.T, p *Peer) {
	t.Helper()
	answer, err := p.Answer(b.offer(t))
	if err != nil {
		t.Fatalf("Answer: %v", err)
	}
	if err := b.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []chan struct{}{b.up, p.connected} {
		select {
		case <-c:
		case <-time.After(10 * time.Second):
			t.Fatal("no connection within 10 s")
		}
	}
}

// read depacketizes the track (RFC 6184) into access units, one per RTP
// timestamp, complete at the marker bit.
func (b *goBrowser) read(tr *webrtc.TrackRemote) {
	var dp codecs.H264Packet
	var cur []byte
	var curTS uint32
	var lastSeq uint16
	inAU, broken, haveSeq := false, false, false
	for {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		if inAU && pkt.Timestamp != curTS {
			inAU = false // the previous access unit never saw its marker
			b.mu.Lock()
			b.lost++
			b.mu.Unlock()
		}
		if !inAU {
			inAU, curTS, broken, cur = true, pkt.Timestamp, false, cur[:0]
		}
		if haveSeq && pkt.SequenceNumber != lastSeq+1 {
			broken = true
		}
		haveSeq, lastSeq = true, pkt.SequenceNumber
		nal, err := dp.Unmarshal(pkt.Payload)
		if err != nil {
			broken = true
		}
		cur = append(cur, nal...)
		if !pkt.Marker {
			continue
		}
		inAU = false
		b.mu.Lock()
		if broken {
			b.lost++
		} else {
			b.aus = append(b.aus, received{ts: pkt.Timestamp, at: time.Now(), data: slices.Clone(cur)})
		}
		b.mu.Unlock()
	}
}

func (b *goBrowser) frames() []received {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.aus)
}

// nals returns an access unit's NAL units less those a packetizer drops
// (AUD, filler), for comparing what was sent with what arrived.
func nals(au []byte) [][]byte {
	var out [][]byte
	for _, n := range h264.SplitNALs(au) {
		if t := h264.Type(n); t != h264.NALAUD && t != 12 {
			out = append(out, n)
		}
	}
	return out
}

// percentile returns the p-th percentile of ds (nearest rank).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

// candidateAddrs returns the addresses of the candidates in an SDP.
func candidateAddrs(t *testing.T, sdpText string) []string {
	t.Helper()
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(sdpText); err != nil {
		t.Fatalf("parse SDP: %v", err)
	}
	var addrs []string
	for _, md := range sd.MediaDescriptions {
		for _, a := range md.Attributes {
			if a.Key != "candidate" {
				continue
			}
			// foundation component transport priority address port typ ...
			f := strings.Fields(a.Value)
			if len(f) < 5 {
				t.Fatalf("candidate %q", a.Value)
			}
			addrs = append(addrs, f[4])
		}
	}
	return addrs
}

func isLoopbackAddr(s string) bool {
	ip := net.ParseIP(s)
	return ip != nil && ip.IsLoopback()
}
