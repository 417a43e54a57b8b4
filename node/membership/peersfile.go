package membership

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/mesh"
)

// The static peers file stands in for the policy until the policy issue
// replaces it:
//
//	[[peer]]
//	name = "dc-a"
//	public_key = "nodekey:…"
//	endpoint = "127.0.0.1:51820"   # optional
//
// Every field is checked; unknown keys are errors (a typo such as
// "publickey" must not silently drop a peer).
type peersFile struct {
	Peer []peerEntry `toml:"peer"`
}

type peerEntry struct {
	Name      string `toml:"name"`
	PublicKey string `toml:"public_key"`
	Endpoint  string `toml:"endpoint"`
}

// maxPeersFile bounds what we read: a peers file is a few KB.
const maxPeersFile = 4 << 20

// LoadPeersFile reads and validates a peers file.
func LoadPeersFile(path string) ([]mesh.Peer, error) {
	peers, _, err := ReadPeersFile(path)
	return peers, err
}

// ReadPeersFile reads at most maxPeersFile bytes of a peers file, parses it
// and returns the hash of its content (to notice changes).
func ReadPeersFile(path string) ([]mesh.Peer, [32]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, [32]byte{}, fmt.Errorf("peers file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPeersFile+1))
	if err != nil {
		return nil, [32]byte{}, fmt.Errorf("peers file %s: %w", path, err)
	}
	peers, err := ParsePeers(b)
	if err != nil {
		return nil, [32]byte{}, fmt.Errorf("peers file %s: %w", path, err)
	}
	return peers, sha256.Sum256(b), nil
}

// ParsePeers parses peers-file TOML. An empty file means no peers.
func ParsePeers(b []byte) ([]mesh.Peer, error) {
	if len(b) > maxPeersFile {
		return nil, fmt.Errorf("larger than %d bytes", maxPeersFile)
	}
	var f peersFile
	md, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&f)
	if err != nil {
		return nil, fmt.Errorf("not valid TOML: %w", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		names := make([]string, len(und))
		for i, k := range und {
			names[i] = k.String()
		}
		return nil, fmt.Errorf("unknown keys %s (allowed: [[peer]] with name, public_key, endpoint)", strings.Join(names, ", "))
	}
	var errs []error
	seenName := map[string]bool{}
	seenKey := map[keys.NodePublic]string{}
	out := make([]mesh.Peer, 0, len(f.Peer))
	for i, e := range f.Peer {
		where := fmt.Sprintf("peer %d", i+1)
		if e.Name != "" {
			where = fmt.Sprintf("peer %d (%q)", i+1, e.Name)
		}
		if err := ValidName(e.Name); err != nil {
			errs = append(errs, fmt.Errorf("%s: name: %w", where, err))
		} else if seenName[e.Name] {
			errs = append(errs, fmt.Errorf("%s: name listed twice", where))
		}
		seenName[e.Name] = true
		pub, err := keys.ParseNodePublic(e.PublicKey)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: public_key: %w", where, err))
			continue
		}
		if other, dup := seenKey[pub]; dup {
			errs = append(errs, fmt.Errorf("%s: public_key already used by %q", where, other))
		}
		seenKey[pub] = e.Name
		p := mesh.Peer{Name: e.Name, PublicKey: pub}
		if e.Endpoint != "" {
			ep, err := netip.ParseAddrPort(e.Endpoint)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: endpoint %q: want IP:PORT or [IPv6]:PORT", where, e.Endpoint))
				continue
			}
			if ep.Port() == 0 || ep.Addr().IsUnspecified() || ep.Addr().IsMulticast() {
				errs = append(errs, fmt.Errorf("%s: endpoint %s is not a unicast address with a port", where, ep))
				continue
			}
			p.Endpoint = netip.AddrPortFrom(ep.Addr().Unmap(), ep.Port())
		}
		out = append(out, p)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// ValidName accepts the names an operator would give a node or a site:
// letters, digits, '-', '_' and '.', 1 to 63 of them.
func ValidName(s string) error {
	if s == "" {
		return errors.New("missing")
	}
	if len(s) > 63 {
		return fmt.Errorf("%q… is longer than 63 characters", strings.ToValidUTF8(s[:63], ""))
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return fmt.Errorf("%q has %q; use letters, digits, '-', '_' or '.'", s, r)
		}
	}
	return nil
}

// FormatPeers writes peers in the peers-file format.
func FormatPeers(peers []mesh.Peer) []byte {
	var b bytes.Buffer
	for _, p := range peers {
		fmt.Fprintf(&b, "[[peer]]\nname = %q\npublic_key = %q\n", p.Name, p.PublicKey.String())
		if p.Endpoint.IsValid() {
			fmt.Fprintf(&b, "endpoint = %q\n", p.Endpoint.String())
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}
