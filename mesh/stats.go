package mesh

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/custos-cctv/custos/keys"
)

// PeerStatus is what the mesh knows about one peer right now.
type PeerStatus struct {
	Name          string          `json:"name"`
	PublicKey     keys.NodePublic `json:"public_key"`
	Addr          netip.Addr      `json:"mesh_addr"`
	Endpoint      string          `json:"endpoint,omitempty"`
	LastHandshake time.Time       `json:"last_handshake,omitzero"`
	RxBytes       uint64          `json:"rx_bytes"`
	TxBytes       uint64          `json:"tx_bytes"`
	// Liveness is memberlist's view: alive, suspect, dead, left, or unknown
	// (never heard of, or gossip off).
	Liveness string `json:"liveness"`
	// Path is the path packets to the peer take now: "direct IP:PORT",
	// "relay NAME", or "none" (path.go).
	Path string `json:"path"`
	// Bytes splits the peer's datagrams by the path they took (with no
	// relays configured, everything is direct).
	Bytes PathBytes `json:"path_bytes"`

	keepalive uint64 // persistent keepalive interval, seconds
}

type deviceStats struct {
	listenPort uint16
	peers      map[keys.NodePublic]PeerStatus
}

// stats reads the device's state through its UAPI get operation. The output
// starts with the private key: it is skipped while parsing and the buffer is
// wiped before returning.
func (m *Mesh) stats() (deviceStats, error) {
	var buf bytes.Buffer
	defer func() { clear(buf.Bytes()[:buf.Cap()]) }()
	if err := m.dev.IpcGetOperation(&buf); err != nil {
		return deviceStats{}, fmt.Errorf("mesh: read device state: %w", err)
	}
	st := deviceStats{peers: map[keys.NodePublic]PeerStatus{}}
	var cur *PeerStatus
	var hsSec, hsNsec int64
	flush := func() {
		if cur != nil {
			if hsSec != 0 || hsNsec != 0 {
				cur.LastHandshake = time.Unix(hsSec, hsNsec)
			}
			st.peers[cur.PublicKey] = *cur
		}
		cur, hsSec, hsNsec = nil, 0, 0
	}
	for line := range bytes.Lines(buf.Bytes()) {
		k, val, ok := bytes.Cut(bytes.TrimSuffix(line, []byte("\n")), []byte("="))
		// Never turn the key lines into strings: strings cannot be wiped.
		if !ok || bytes.Equal(k, []byte("private_key")) || bytes.Equal(k, []byte("preshared_key")) {
			continue
		}
		v := string(val)
		switch string(k) {
		case "listen_port":
			p, _ := strconv.ParseUint(v, 10, 16)
			st.listenPort = uint16(p)
		case "public_key":
			flush()
			pub, err := keys.ParseNodePublicHex(v)
			if err != nil {
				return deviceStats{}, fmt.Errorf("mesh: device reported a bad peer key: %w", err)
			}
			cur = &PeerStatus{PublicKey: pub, Addr: m.AddrOf(pub)}
		case "endpoint":
			if cur != nil {
				cur.Endpoint = v
			}
		case "last_handshake_time_sec":
			hsSec, _ = strconv.ParseInt(v, 10, 64)
		case "last_handshake_time_nsec":
			hsNsec, _ = strconv.ParseInt(v, 10, 64)
		case "persistent_keepalive_interval":
			if cur != nil {
				cur.keepalive, _ = strconv.ParseUint(v, 10, 16)
			}
		case "rx_bytes":
			if cur != nil {
				cur.RxBytes, _ = strconv.ParseUint(v, 10, 64)
			}
		case "tx_bytes":
			if cur != nil {
				cur.TxBytes, _ = strconv.ParseUint(v, 10, 64)
			}
		}
	}
	flush()
	return st, nil
}

// Status returns every desired peer with its handshake, transfer counters and
// gossip liveness, sorted by name.
func (m *Mesh) Status() ([]PeerStatus, error) {
	st, err := m.stats()
	if err != nil {
		return nil, err
	}
	var live map[netip.Addr]string
	if m.gossip != nil {
		live = m.gossip.liveness()
	}
	peers := m.PeerList()
	out := make([]PeerStatus, 0, len(peers))
	now := time.Now()
	for _, p := range peers {
		ps := st.peers[p.PublicKey]
		ps.Path = m.pathOf(p.PublicKey, ps, now).String()
		if m.relay != nil {
			ps.Bytes = m.relay.peerPathBytes(p.PublicKey)
		} else {
			ps.Bytes = PathBytes{DirectRx: ps.RxBytes, DirectTx: ps.TxBytes}
		}
		ps.Name = p.Name
		ps.PublicKey = p.PublicKey
		ps.Addr = m.AddrOf(p.PublicKey)
		ps.Liveness = "unknown"
		if l, ok := live[ps.Addr]; ok {
			ps.Liveness = l
		}
		out = append(out, ps)
	}
	return out, nil
}
