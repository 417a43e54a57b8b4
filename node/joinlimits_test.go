package node

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/policy"
)

// dialJoinFrom opens a join connection to addr from the loopback address
// from (Linux routes all of 127/8 to lo), so tests can play many sources.
func dialJoinFrom(t testing.TB, from, addr string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// sendJoinFrom sends req as a joiner from source from and returns the answer.
func sendJoinFrom(t testing.TB, from, addr string, req []byte) ApplyResult {
	t.Helper()
	c := dialJoinFrom(t, from, addr)
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(req); err != nil {
		t.Fatalf("send from %s: %v", from, err)
	}
	c.CloseWrite()
	var res ApplyResult
	if err := json.NewDecoder(c).Decode(&res); err != nil {
		t.Fatalf("answer to %s: %v", from, err)
	}
	return res
}

func inviteStore(t testing.TB, ctx context.Context, f acme, name string) *Token {
	t.Helper()
	now := time.Now()
	inv, err := MakeInvite(ctx, f.dc.cfg.Dir, f.admin, "alice", InviteSpec{Role: policy.RoleStore, Name: name, Site: "praha-1", Expires: now.Add(time.Hour)}, now)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := DecodeToken(inv.Token, now)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Idle connections, from one source or from many, neither keep a real
// joiner out nor stay longer than the read deadline.
func TestJoinIdleConnectionsDoNotBlock(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	f := foundAcme(t, ctx)
	js := f.dc.join
	js.SetReadTimeout(2 * time.Second)
	addr := f.dc.cfg.Listen.String()

	// One source gets joinMaxPerSource connections; one more is closed
	// at once, unanswered.
	// Each sends the first byte of a redeem, which takes it past the port's
	// sniff (the relay shares it) to the join service, and then stalls.
	stall := func(c *net.TCPConn) *net.TCPConn {
		if _, err := c.Write([]byte("{")); err != nil {
			t.Fatal(err)
		}
		return c
	}
	var idle []*net.TCPConn
	for range joinMaxPerSource {
		idle = append(idle, stall(dialJoinFrom(t, "127.0.0.2", addr)))
	}
	waitTrue(t, 10*time.Second, "the stalled connections at the join service", func() bool { return js.Conns() == joinMaxPerSource })
	extra := stall(dialJoinFrom(t, "127.0.0.2", addr))
	extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := extra.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("connection over the per-source limit: read %d, %v; want it closed", n, err)
	}
	// Many sources fill every slot.
	for i := 0; len(idle) < joinMaxConns; i++ {
		from := net.IPv4(127, 0, 1, byte(10+i/joinMaxPerSource)).String()
		idle = append(idle, stall(dialJoinFrom(t, from, addr)))
	}
	waitTrue(t, 10*time.Second, "every join slot taken", func() bool {
		return js.Conns() == joinMaxConns
	})

	// A real joiner still gets in.
	tok := inviteStore(t, ctx, f, "store-praha-1")
	cfg := Config{Dir: filepath.Join(f.tmp, "store-praha-1"), Name: "store-praha-1", Listen: f.listen()}
	if res, err := PrepareJoin(ctx, cfg, tok); err != nil || !res.Applied {
		t.Fatalf("join while idle connections hold the service: %+v %v", res, err)
	}

	// Idle connections are cut well before the joiner's 15 s: each gets
	// an answer saying why, or is closed if a newcomer displaced it.
	for _, c := range idle {
		c.SetReadDeadline(time.Now().Add(joinTimeout - time.Second))
		b, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("idle connection not cut before %v: %v", joinTimeout, err)
		}
		if len(b) > 0 && !strings.Contains(string(b), "not sent within") {
			t.Errorf("idle connection answered %s", b)
		}
	}
}

// Junk, repeated, writes one audit entry per source and reason per
// interval, and junk redeems never reach the leader's vet (whose refusals
// are audited as policy changes).
func TestJoinJunkAuditedOncePerSource(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	f := foundAcme(t, ctx)
	addr := f.dc.cfg.Listen.String()
	_, denyJoin0 := auditDecisions(t, f.dc, "join")
	_, denyPolicy0 := auditDecisions(t, f.dc, "policy-change")

	// A redeem with a wrong proof: well formed, refused by the policy.
	tok := inviteStore(t, ctx, f, "store-praha-1")
	bad := *tok
	bad.Secret = make([]byte, 32)
	pub := keys.NewNodePrivate().Public()
	for _, from := range []string{"127.0.0.3", "127.0.0.4"} {
		for i := range 10 {
			if res := sendJoinFrom(t, from, addr, []byte("HELO not a redeem\r\n\r\n")); res.Applied || res.Reason == "" {
				t.Fatalf("junk %d from %s: %+v", i, from, res)
			}
			env, err := bad.Redeem(pub, "127.0.0.9:1", nil, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if res := sendJoinFrom(t, from, addr, env.Marshal()); res.Applied || !strings.Contains(res.Reason, "proof does not verify") {
				t.Fatalf("forged redeem %d from %s: %+v", i, from, res)
			}
		}
	}
	// Two sources, two reasons each.
	if _, deny := auditDecisions(t, f.dc, "join"); deny-denyJoin0 != 4 {
		t.Errorf("40 refused join requests from 2 sources wrote %d audit entries, want 4", deny-denyJoin0)
	}
	if _, deny := auditDecisions(t, f.dc, "policy-change"); deny != denyPolicy0 {
		t.Errorf("forged redeems reached the leader: %d policy-change refusals audited", deny-denyPolicy0)
	}
	// The invite is still good.
	cfg := Config{Dir: filepath.Join(f.tmp, "store-praha-1"), Name: "store-praha-1", Listen: f.listen()}
	if res, err := PrepareJoin(ctx, cfg, tok); err != nil || !res.Applied {
		t.Fatalf("join after the junk: %+v %v", res, err)
	}
}
