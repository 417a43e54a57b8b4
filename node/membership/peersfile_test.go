package membership

import (
	"strings"
	"testing"

	"github.com/custos-cctv/custos/keys"
)

func TestParsePeers(t *testing.T) {
	k1, k2 := keys.NewNodePrivate().Public(), keys.NewNodePrivate().Public()
	good := `
[[peer]]
name = "dc-a"
public_key = "` + k1.String() + `"
endpoint = "127.0.0.1:51820"

[[peer]]
name = "store_praha-1"
public_key = "` + k2.String() + `"
`
	peers, err := ParsePeers([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 2 || peers[0].Name != "dc-a" || peers[0].PublicKey != k1 || peers[0].Endpoint.String() != "127.0.0.1:51820" ||
		peers[1].PublicKey != k2 || peers[1].Endpoint.IsValid() {
		t.Fatalf("parsed %+v", peers)
	}
	// FormatPeers round-trips.
	back, err := ParsePeers(FormatPeers(peers))
	if err != nil || len(back) != 2 || back[0] != peers[0] || back[1] != peers[1] {
		t.Fatalf("FormatPeers round trip: %+v, %v", back, err)
	}
	if p, err := ParsePeers(nil); err != nil || len(p) != 0 {
		t.Fatalf("empty file: %v, %v", p, err)
	}

	entry := func(name, key, ep string) string {
		s := "[[peer]]\nname = \"" + name + "\"\npublic_key = \"" + key + "\"\n"
		if ep != "" {
			s += "endpoint = \"" + ep + "\"\n"
		}
		return s
	}
	cases := []struct {
		name, in, want string
	}{
		{"not toml", "[[peer]\nname=", "not valid TOML"},
		{"unknown key", entry("a", k1.String(), "") + "publickey = \"x\"\n", "unknown keys"},
		{"unknown table", "[peers]\nx = 1\n", "unknown keys"},
		{"missing name", "[[peer]]\npublic_key = \"" + k1.String() + "\"\n", "name: missing"},
		{"bad name", entry("dc a", k1.String(), ""), "use letters"},
		{"missing key", "[[peer]]\nname = \"a\"\n", "public_key"},
		{"bad key", entry("a", "nodekey:1234", ""), "public_key"},
		{"dup name", entry("a", k1.String(), "") + entry("a", k2.String(), ""), "listed twice"},
		{"dup key", entry("a", k1.String(), "") + entry("b", k1.String(), ""), "already used by \"a\""},
		{"bad endpoint", entry("a", k1.String(), "localhost:1"), "want IP:PORT"},
		{"no port", entry("a", k1.String(), "127.0.0.1"), "want IP:PORT"},
		{"port 0", entry("a", k1.String(), "127.0.0.1:0"), "not a unicast address"},
		{"unspecified", entry("a", k1.String(), "0.0.0.0:51820"), "not a unicast address"},
		{"wrong type", "[[peer]]\nname = 5\n", "not valid TOML"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePeers([]byte(tc.in))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want mention of %q", err, tc.want)
			}
		})
	}
}

func FuzzParsePeers(f *testing.F) {
	k := keys.NewNodePrivate().Public()
	f.Add([]byte("[[peer]]\nname = \"a\"\npublic_key = \"" + k.String() + "\"\nendpoint = \"[::1]:5\"\n"))
	f.Add([]byte("[[peer]]\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		peers, err := ParsePeers(b)
		if err != nil {
			return
		}
		// Whatever parses is valid and survives a round trip.
		seen := map[keys.NodePublic]bool{}
		for _, p := range peers {
			if p.PublicKey.IsZero() || ValidName(p.Name) != nil || seen[p.PublicKey] {
				t.Fatalf("accepted invalid peer %+v", p)
			}
			seen[p.PublicKey] = true
		}
		back, err := ParsePeers(FormatPeers(peers))
		if err != nil || len(back) != len(peers) {
			t.Fatalf("round trip: %v", err)
		}
		for i := range back {
			if back[i] != peers[i] {
				t.Fatalf("round trip changed %+v to %+v", peers[i], back[i])
			}
		}
	})
}
