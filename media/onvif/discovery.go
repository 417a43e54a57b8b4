package onvif

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// WS-Discovery's constants (the 2005/04 draft, as ONVIF uses it).
const (
	nsAddressing = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
	nsDiscovery  = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
	nsNetwork    = "http://www.onvif.org/ver10/network/wsdl"
)

// DiscoveryAddr is WS-Discovery's IPv4 multicast group and port.
var DiscoveryAddr = netip.MustParseAddrPort("239.255.255.250:3702")

// Bounds on discovery.
const (
	MaxReply      = 64 << 10 // bytes of one ProbeMatches datagram
	MaxDevices    = 256
	MaxXAddrs     = 8  // per device
	maxScopes     = 64 // per device
	maxIgnored    = 16 // reasons kept
	maxScopeBytes = 512
)

// Device is one camera (or other ONVIF device) that answered a probe.
type Device struct {
	Address  netip.Addr `json:"address"`  // the reply's source
	Endpoint string     `json:"endpoint"` // its endpoint reference, urn:uuid:…
	XAddrs   []string   `json:"xaddrs"`   // its device service URLs, http(s) only
	Types    []string   `json:"types"`
	Scopes   []string   `json:"scopes"`
	// Name, Hardware and Location are from its onvif://www.onvif.org/…
	// scopes, unescaped.
	Name     string `json:"name"`
	Hardware string `json:"hardware"`
	Location string `json:"location"`
}

// Result is what a discovery found and what it ignored (at most 16
// reasons, for an operator wondering where a camera went).
type Result struct {
	Devices []Device `json:"devices"`
	Ignored []string `json:"ignored,omitempty"`
}

// probeTypes are probed one per message: a probe listing both would match
// only devices of both types, and older cameras announce only the first.
var probeTypes = []string{"dn:NetworkVideoTransmitter", "tds:Device"}

// probeMessage is a Probe for typ with message id.
func probeMessage(id, typ string) []byte {
	return []byte(`<?xml version="1.0" encoding="UTF-8"?>` +
		`<s:Envelope xmlns:s="` + nsSOAP12 + `" xmlns:a="` + nsAddressing + `" xmlns:d="` + nsDiscovery + `" xmlns:dn="` + nsNetwork + `" xmlns:tds="` + nsDevice + `">` +
		`<s:Header><a:Action s:mustUnderstand="1">` + nsDiscovery + `/Probe</a:Action>` +
		`<a:MessageID>` + id + `</a:MessageID>` +
		`<a:ReplyTo><a:Address>` + nsAddressing + `/role/anonymous</a:Address></a:ReplyTo>` +
		`<a:To s:mustUnderstand="1">urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To></s:Header>` +
		`<s:Body><d:Probe><d:Types>` + typ + `</d:Types></d:Probe></s:Body></s:Envelope>`)
}

func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("urn:uuid:%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Discover probes the local IPv4 networks for ONVIF devices: from every
// interface that is up, can multicast and has an IPv4 address (a socket
// bound to that address sends out of that interface, with or without a
// multicast route), and collects the replies until timeout or ctx ends.
func Discover(ctx context.Context, timeout time.Duration) (Result, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return Result{}, fmt.Errorf("onvif: discovery: %w", err)
	}
	var conns []*net.UDPConn
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagMulticast == 0 || ifi.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifi.Addrs()
		for _, a := range addrs {
			pfx, ok := a.(*net.IPNet)
			if !ok || pfx.IP.To4() == nil {
				continue
			}
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: pfx.IP})
			if err == nil {
				conns = append(conns, c)
			}
		}
	}
	if len(conns) == 0 {
		return Result{}, errors.New("onvif: discovery: no interface that is up, can multicast and has an IPv4 address")
	}
	return probe(ctx, conns, net.UDPAddrFromAddrPort(DiscoveryAddr), timeout)
}

// probe sends the probes from every conn to dst, twice (UDP may drop one;
// WS-Discovery repeats too), reads replies until timeout, and closes the
// conns.
func probe(ctx context.Context, conns []*net.UDPConn, dst *net.UDPAddr, timeout time.Duration) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ids := map[string]bool{}
	var msgs [][]byte
	for _, typ := range probeTypes {
		id := newUUID()
		ids[id] = true
		msgs = append(msgs, probeMessage(id, typ))
	}
	var sendErr error
	sent := 0
	send := func() {
		for _, c := range conns {
			for _, m := range msgs {
				if _, err := c.WriteToUDP(m, dst); err != nil {
					sendErr = err
				} else {
					sent++
				}
			}
		}
	}
	send()
	if sent == 0 {
		for _, c := range conns {
			c.Close()
		}
		return Result{}, fmt.Errorf("onvif: discovery: sending the probe to %s: %w", dst, sendErr)
	}

	var (
		mu  sync.Mutex
		col = newCollector(ids)
		wg  sync.WaitGroup
	)
	for _, c := range conns {
		wg.Go(func() {
			buf := make([]byte, MaxReply+1)
			for {
				n, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				mu.Lock()
				col.add(buf[:n], from.Addr().Unmap())
				mu.Unlock()
			}
		})
	}
	resend := time.NewTimer(min(timeout/3, 500*time.Millisecond))
	select {
	case <-resend.C:
		send()
		<-ctx.Done()
	case <-ctx.Done():
		resend.Stop()
	}
	for _, c := range conns {
		c.Close() // ends the readers
	}
	wg.Wait()
	return col.result(), nil
}

// collector gathers ProbeMatches, deduplicated by endpoint reference.
type collector struct {
	ids  map[string]bool
	seen map[string]bool
	res  Result
}

func newCollector(ids map[string]bool) *collector {
	return &collector{ids: ids, seen: map[string]bool{}}
}

func (c *collector) ignore(from netip.Addr, why string) {
	if len(c.res.Ignored) < maxIgnored {
		c.res.Ignored = append(c.res.Ignored, from.String()+": "+why)
	}
}

func (c *collector) add(b []byte, from netip.Addr) {
	if len(b) > MaxReply {
		c.ignore(from, fmt.Sprintf("a reply larger than %d bytes", MaxReply))
		return
	}
	devs, err := ParseProbeMatches(b, c.ids)
	if err != nil {
		if !errors.Is(err, errNotOurs) { // others' probes and our own echo are no news
			c.ignore(from, err.Error())
		}
		return
	}
	for _, d := range devs {
		if c.seen[d.Endpoint] {
			continue
		}
		if len(c.res.Devices) == MaxDevices {
			c.ignore(from, fmt.Sprintf("more than %d devices", MaxDevices))
			return
		}
		c.seen[d.Endpoint] = true
		d.Address = from
		c.res.Devices = append(c.res.Devices, d)
	}
}

func (c *collector) result() Result {
	r := c.res
	slices.SortFunc(r.Devices, func(a, b Device) int {
		if x := a.Address.Compare(b.Address); x != 0 {
			return x
		}
		return strings.Compare(a.Endpoint, b.Endpoint)
	})
	return r
}

// errNotOurs: a message that is no reply to our probes (another client's
// probe or its matches, a Hello, our own probe looped back).
var errNotOurs = errors.New("not a reply to our probe")

type probeMatches struct {
	XMLName   xml.Name `xml:"Envelope"`
	Action    string   `xml:"Header>Action"`
	RelatesTo string   `xml:"Header>RelatesTo"`
	Matches   []struct {
		Address string `xml:"EndpointReference>Address"`
		Types   string `xml:"Types"`
		Scopes  string `xml:"Scopes"`
		XAddrs  string `xml:"XAddrs"`
	} `xml:"Body>ProbeMatches>ProbeMatch"`
}

// ParseProbeMatches parses one discovery datagram: a ProbeMatches whose
// RelatesTo is one of ids (else an error wrapping errNotOurs). Matches
// without an endpoint reference or an http(s) XAddr are left out; an
// error says why when none is left.
func ParseProbeMatches(b []byte, ids map[string]bool) ([]Device, error) {
	if len(b) > MaxReply {
		return nil, fmt.Errorf("a reply larger than %d bytes", MaxReply)
	}
	var m probeMatches
	d := xml.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&m); err != nil {
		return nil, fmt.Errorf("malformed XML: %s", clean(err.Error()))
	}
	if m.XMLName.Space != nsSOAP12 && m.XMLName.Space != nsSOAP11 {
		return nil, errors.New("no SOAP envelope")
	}
	action := strings.TrimSpace(m.Action)
	if action != nsDiscovery+"/ProbeMatches" {
		return nil, fmt.Errorf("%w: action %s", errNotOurs, clean(action))
	}
	if !ids[strings.TrimSpace(m.RelatesTo)] {
		return nil, fmt.Errorf("%w: RelatesTo %q is none of our probes' MessageIDs", errNotOurs, clean(m.RelatesTo))
	}
	var out []Device
	var why string
	for i, pm := range m.Matches {
		if i == MaxDevices {
			break
		}
		dev := Device{Endpoint: strings.TrimSpace(pm.Address)}
		if dev.Endpoint == "" || len(dev.Endpoint) > maxToken || clean(dev.Endpoint) != dev.Endpoint {
			why = "a ProbeMatch without a valid endpoint reference"
			continue
		}
		for x := range strings.FieldsSeq(pm.XAddrs) {
			if len(dev.XAddrs) == MaxXAddrs {
				break
			}
			if _, err := checkXAddr(x); err == nil && clean(x) == x {
				dev.XAddrs = append(dev.XAddrs, x)
			}
		}
		if len(dev.XAddrs) == 0 {
			why = "a ProbeMatch of " + dev.Endpoint + " without an http(s) XAddr"
			continue
		}
		for t := range strings.FieldsSeq(pm.Types) {
			if len(dev.Types) < maxScopes && len(t) <= maxScopeBytes {
				dev.Types = append(dev.Types, clean(t))
			}
		}
		for s := range strings.FieldsSeq(pm.Scopes) {
			if len(dev.Scopes) == maxScopes {
				break
			}
			if len(s) > maxScopeBytes {
				continue
			}
			dev.Scopes = append(dev.Scopes, clean(s))
			dev.scope(s)
		}
		out = append(out, dev)
	}
	if len(out) == 0 {
		if why == "" {
			why = "a ProbeMatches without a ProbeMatch"
		}
		return nil, errors.New(why)
	}
	return out, nil
}

// scope takes name, hardware and location from an ONVIF scope
// (onvif://www.onvif.org/name/Front%20door).
func (d *Device) scope(s string) {
	rest, ok := strings.CutPrefix(s, "onvif://www.onvif.org/")
	if !ok {
		return
	}
	kind, val, _ := strings.Cut(rest, "/")
	if v, err := url.PathUnescape(val); err == nil {
		val = v
	}
	val = clean(val)
	switch kind {
	case "name":
		if d.Name == "" {
			d.Name = val
		}
	case "hardware":
		if d.Hardware == "" {
			d.Hardware = val
		}
	case "location":
		if d.Location == "" {
			d.Location = val
		}
	}
}
