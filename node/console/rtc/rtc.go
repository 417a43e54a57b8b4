package rtc

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Defaults of Config.
const (
	DefaultMaxOfferBytes  = 64 << 10
	DefaultQueueBytes     = 8 << 20
	DefaultMaxFrameBytes  = 8 << 20
	DefaultConnectTimeout = 15 * time.Second
	defaultGatherTimeout  = 5 * time.Second
	// queueFrames bounds the access units between the demuxer and the
	// sender whatever their size: two seconds at 25 fps.
	queueFrames = 50
	// rtpMTU is what pion sends by default: small enough for any path,
	// with room for the header extensions its interceptors add.
	rtpMTU = 1200
)

// Errors of Answer and Feed.
var (
	ErrOfferTooLarge = errors.New("rtc: the browser's offer is too large")
	ErrNoH264        = errors.New("rtc: the browser offers no H.264 video to receive (packetization-mode=1)")
	ErrAnswered      = errors.New("rtc: this peer has answered an offer already")
	ErrFeeding       = errors.New("rtc: this peer is being fed already")
	ErrClosed        = errors.New("rtc: the browser's connection closed")
	ErrFailed        = errors.New("rtc: the browser's connection failed")
)

// Config tunes a Peer; the zero value is ready to use.
type Config struct {
	// MaxOfferBytes bounds the offer Answer accepts; 0 means
	// DefaultMaxOfferBytes (a browser's offer for one video track is
	// a few kB).
	MaxOfferBytes int
	// QueueBytes bounds the access units waiting to be sent; past it (or
	// past 50 of them) frames are dropped up to the next key frame. 0
	// means DefaultQueueBytes.
	QueueBytes int
	// MaxFrameBytes bounds one access unit; a larger one is dropped. 0
	// means DefaultMaxFrameBytes.
	MaxFrameBytes int
	// ConnectTimeout is how long Feed waits for the browser to connect;
	// 0 means DefaultConnectTimeout.
	ConnectTimeout time.Duration
}

func (c *Config) defaults() {
	if c.MaxOfferBytes <= 0 {
		c.MaxOfferBytes = DefaultMaxOfferBytes
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = DefaultQueueBytes
	}
	if c.MaxFrameBytes <= 0 {
		c.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
}

// Stats counts what a Peer did.
type Stats struct {
	Frames  uint64 // access units sent
	Bytes   uint64 // H.264 bytes sent (Annex-B, before packetization)
	Dropped uint64 // access units dropped because sending fell behind the stream (or failed)
	Skipped uint64 // access units skipped before the browser connected and a key frame came, or damaged
	PLI     uint64 // the browser's picture loss indications: it waits for the camera's next key frame
	Refused uint64 // sends to an address that is not loopback, refused (pion's filters should leave none)
	// LastPTS and LastRTP are the last access unit sent: its 90 kHz PTS
	// (the camera's clock) and its RTP timestamp, as one pair. RTP
	// timestamps advance by the PTS steps, so the pair maps a frame the
	// browser reports (requestVideoFrameCallback's rtpTimestamp) back to
	// the camera's time: how the delay to the browser is measured.
	LastPTS uint64
	LastRTP uint32
}

// sentStamp is the PTS and RTP timestamp of the last access unit sent.
type sentStamp struct {
	pts uint64
	rtp uint32
}

// Peer is one browser's WebRTC connection carrying one camera's video.
type Peer struct {
	cfg    Config
	pc     *webrtc.PeerConnection
	track  *webrtc.TrackLocalStaticRTP
	sender *webrtc.RTPSender

	answered  atomic.Bool
	feeding   atomic.Bool
	connected chan struct{} // closed when the connection is up
	done      chan struct{} // closed when it failed or closed
	doneOnce  sync.Once
	doneErr   error
	connOnce  sync.Once
	closeOnce sync.Once

	tx sendState // Feed's, one at a time
	// beforeSend, if set, runs before each access unit is sent with its
	// PTS and RTP timestamp: tests slow the sender and map the browser's
	// frames back to the camera's with it.
	beforeSend func(pts uint64, rtpTS uint32)

	frames, bytes, dropped, skipped, pli, refused atomic.Uint64
	last                                          atomic.Pointer[sentStamp]
}

// h264Profiles are the H.264 formats a Peer accepts, all in
// packetization-mode 1 (FU-A, which every browser supports). The stream is
// passed through, so the profile the browser agrees to is nominal: the first
// is Constrained Baseline, what most cameras and the fixture send, and
// level-asymmetry-allowed lets the camera's level exceed the one agreed.
var h264Profiles = []string{"42e01f", "42001f", "4d001f", "64001f"}

func h264Fmtp(profile string) string {
	return "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=" + profile
}

// newAPI builds a pion API that speaks H.264 only and gathers, accepts and
// sends on loopback only, counting refused sends in refused.
func newAPI(refused *atomic.Uint64) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	fb := []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}
	for i, prof := range h264Profiles {
		err := m.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: h264Fmtp(prof), RTCPFeedback: fb},
			PayloadType:        webrtc.PayloadType(102 + 2*i),
		}, webrtc.RTPCodecTypeVideo)
		if err != nil {
			return nil, err
		}
	}
	// NACK responses, sender reports and transport-wide congestion
	// feedback, as for any pion sender.
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, err
	}
	se, err := loopbackOnly(refused)
	if err != nil {
		return nil, err
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(ir)), nil
}

// loopbackOnly is the SettingEngine that keeps a Peer on this machine's
// loopback interface: this is the only network the console's browser and
// node share by design, and nothing may be sent anywhere else.
func loopbackOnly(refused *atomic.Uint64) (webrtc.SettingEngine, error) {
	var se webrtc.SettingEngine
	n, err := newLoopbackNet(refused)
	if err != nil {
		return se, err
	}
	se.SetNet(n)
	se.SetIncludeLoopbackCandidate(true) // pion skips loopback by default (RFC 8445 §5.1.1.1)
	se.SetInterfaceFilter(isLoopbackInterface)
	se.SetIPFilter(isLoopbackIP)
	// A browser's candidates on other interfaces (and any peer-reflexive
	// address it sends from) are dropped, so no check or media is ever
	// sent to them.
	se.SetRemoteIPFilter(isLoopbackIP)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	// On loopback a connection that stops answering for 5 s is gone.
	se.SetICETimeouts(5*time.Second, 10*time.Second, 2*time.Second)
	return se, nil
}

func isLoopbackIP(ip net.IP) bool { return ip.IsLoopback() }

func isLoopbackInterface(name string) bool {
	ifi, err := net.InterfaceByName(name)
	return err == nil && ifi.Flags&net.FlagLoopback != 0
}

// New returns a Peer that has not answered yet.
func New(cfg Config) (*Peer, error) {
	cfg.defaults()
	p := &Peer{cfg: cfg, connected: make(chan struct{}), done: make(chan struct{})}
	api, err := newAPI(&p.refused)
	if err != nil {
		return nil, fmt.Errorf("rtc: %w", err)
	}
	// No ICE servers: host candidates on loopback are all there is.
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("rtc: %w", err)
	}
	p.pc = pc
	p.track, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: h264Fmtp(h264Profiles[0])}, "video", "custos")
	if err == nil {
		p.sender, err = pc.AddTrack(p.track)
	}
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("rtc: %w", err)
	}
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateConnected:
			p.connOnce.Do(func() { close(p.connected) })
		case webrtc.PeerConnectionStateFailed:
			p.end(ErrFailed)
		case webrtc.PeerConnectionStateClosed:
			p.end(ErrClosed)
		}
	})
	go p.readRTCP()
	return p, nil
}

func (p *Peer) end(err error) {
	p.doneOnce.Do(func() {
		p.doneErr = err
		close(p.done)
	})
}

// readRTCP reads the browser's feedback, which pion's interceptors act on
// (NACKs are answered from the packets they keep); it ends with the
// connection.
func (p *Peer) readRTCP() {
	for {
		pkts, _, err := p.sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, pkt := range pkts {
			switch pkt.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				p.pli.Add(1)
			}
		}
	}
}

// Answer takes the browser's offer (SDP) and returns the answer with all of
// this side's candidates in it (loopback only), so no trickle is needed. A
// Peer answers once.
func (p *Peer) Answer(offerSDP string) (string, error) {
	if len(offerSDP) > p.cfg.MaxOfferBytes {
		return "", fmt.Errorf("%w (%d bytes, at most %d)", ErrOfferTooLarge, len(offerSDP), p.cfg.MaxOfferBytes)
	}
	if !p.answered.CompareAndSwap(false, true) {
		return "", ErrAnswered
	}
	var parsed sdp.SessionDescription
	if err := parsed.UnmarshalString(offerSDP); err != nil {
		return "", fmt.Errorf("rtc: the browser's offer: %w", err)
	}
	if !offersH264(&parsed) {
		return "", ErrNoH264
	}
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offerSDP}); err != nil {
		return "", fmt.Errorf("rtc: the browser's offer: %w", err)
	}
	answer, err := p.pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("rtc: answer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(answer); err != nil {
		return "", fmt.Errorf("rtc: answer: %w", err)
	}
	select {
	case <-gathered:
	case <-time.After(defaultGatherTimeout):
		return "", errors.New("rtc: gathering loopback candidates timed out")
	}
	ld := p.pc.LocalDescription()
	if ld == nil {
		return "", errors.New("rtc: no local description after gathering")
	}
	if err := answerSendsH264(ld.SDP); err != nil {
		return "", err
	}
	return ld.SDP, nil
}

// offersH264 reports whether an offer has a video section the browser
// receives in H.264 with packetization-mode 1.
func offersH264(sd *sdp.SessionDescription) bool {
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Media != "video" || md.MediaName.Port.Value == 0 {
			continue
		}
		if _, ok := md.Attribute("sendonly"); ok {
			continue
		}
		if _, ok := md.Attribute("inactive"); ok {
			continue
		}
		h264PT := map[string]bool{}
		for _, a := range md.Attributes {
			if a.Key == "rtpmap" {
				pt, codec, _ := strings.Cut(a.Value, " ")
				if strings.HasPrefix(strings.ToUpper(codec), "H264/") {
					h264PT[pt] = true
				}
			}
		}
		for _, a := range md.Attributes {
			if a.Key == "fmtp" {
				pt, params, _ := strings.Cut(a.Value, " ")
				if h264PT[pt] && strings.Contains(params, "packetization-mode=1") {
					return true
				}
			}
		}
	}
	return false
}

// answerSendsH264 checks that the answer really sends the one video track
// in H.264 (pion answers an offer it cannot match with the section
// rejected rather than with an error).
func answerSendsH264(answer string) error {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(answer); err != nil {
		return fmt.Errorf("rtc: own answer: %w", err)
	}
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Media != "video" || md.MediaName.Port.Value == 0 {
			continue
		}
		if _, ok := md.Attribute("sendonly"); !ok {
			if _, ok := md.Attribute("sendrecv"); !ok {
				continue
			}
		}
		for _, a := range md.Attributes {
			if a.Key == "rtpmap" && strings.Contains(strings.ToUpper(a.Value), " H264/") {
				return nil
			}
		}
	}
	return ErrNoH264
}

// Stats returns what the Peer has done so far.
func (p *Peer) Stats() Stats {
	st := Stats{
		Frames:  p.frames.Load(),
		Bytes:   p.bytes.Load(),
		Dropped: p.dropped.Load(),
		Skipped: p.skipped.Load(),
		PLI:     p.pli.Load(),
		Refused: p.refused.Load(),
	}
	if l := p.last.Load(); l != nil {
		st.LastPTS, st.LastRTP = l.pts, l.rtp
	}
	return st
}

// Close ends the connection; a Feed running returns ErrClosed. It may be
// called more than once.
func (p *Peer) Close() error {
	var err error
	p.closeOnce.Do(func() {
		err = p.pc.Close()
		p.end(ErrClosed)
	})
	return err
}
