package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/policy/audit"
)

const aDay = 24 * time.Hour

// The policy's default is the journal's: a journal opened without the
// policy's word prunes at the same age as one that has it.
func TestDefaultAuditRetentionIsTheJournals(t *testing.T) {
	if DefaultAuditRetention != audit.DefaultRetention {
		t.Fatalf("policy keeps audit entries %v by default, the journal %v", DefaultAuditRetention, audit.DefaultRetention)
	}
	if DefaultAuditRetention != 30*aDay {
		t.Fatalf("default audit retention %v, want the seed's 30 days", DefaultAuditRetention)
	}
	if (*State)(nil).AuditKeep() != 30*aDay || new(State).AuditKeep() != 30*aDay {
		t.Fatal("an empty state does not keep audit entries 30 days")
	}
}

func setAuditRetention(t testing.TB, u *testUser, r time.Duration, why string, at time.Time) Envelope {
	t.Helper()
	c := cmd(KindSetAuditRetention, at)
	c.AuditRetention = &AuditRetention{Retention: r, Justification: why}
	return u.sign(t, c)
}

const auditWhy = "the insurer asks for a year of operator logs after any claim"

// In the bootstrap one admin sets it, within its bounds.
func TestAuditRetention(t *testing.T) {
	alice := newTestUser(t, "alice")
	s := founded(t, alice)
	vic := newTestUser(t, "vic")
	c := cmd(KindAddUser, t0)
	u := vic.user(UserAuditor)
	c.User = &u
	mustApply(t, s, alice.sign(t, c))

	for _, c := range []struct {
		name string
		by   *testUser
		r    time.Duration
		why  string
		want string
	}{
		{"by an auditor", vic, 90 * aDay, auditWhy, `signer "vic" has role auditor; changing the policy needs role admin`},
		{"zero", alice, 0, "", "audit retention 0s is shorter than 720h0m0s: the operation logs are kept at least 30 days"},
		{"negative", alice, -aDay, "", "audit retention -24h0m0s is shorter than 720h0m0s"},
		{"a second short of 30 days", alice, 30*aDay - time.Second, auditWhy, "audit retention 719h59m59s is shorter than 720h0m0s"},
		{"longer without a justification", alice, 90 * aDay, "", "audit retention 2160h0m0s is above the default 720h0m0s and needs a written justification (at least 20 characters)"},
		{"longer with 19 characters", alice, 90 * aDay, strings.Repeat("ž", 19), "needs a written justification (at least 20 characters)"},
		{"a blank justification", alice, 90 * aDay, strings.Repeat(" ", 30), "audit retention: needs a justification"},
		{"a justification with an escape", alice, 90 * aDay, auditWhy + "\x1b[2J", `justification has control character '\x1b'`},
		{"over ten years", alice, MaxAuditRetention + time.Second, auditWhy, "audit retention 87672h0m1s is longer than ten years (87672h0m0s)"},
	} {
		t.Run(c.name, func(t *testing.T) { refused(t, s, setAuditRetention(t, c.by, c.r, c.why, t0), c.want) })
	}
	empty := cmd(KindSetAuditRetention, t0)
	refused(t, s, alice.sign(t, empty), "no audit retention")

	ledger := len(s.Ledger)
	for _, c := range []struct {
		r   time.Duration
		why string
	}{
		{MaxAuditRetention, auditWhy},
		{90 * aDay, strings.Repeat("ž", 20)}, // characters, not bytes
		{365 * aDay, auditWhy},
		{30 * aDay, ""}, // back to the default needs no reason, and drops the old one
	} {
		mustApply(t, s, setAuditRetention(t, alice, c.r, c.why, t0))
		if s.AuditKeep() != c.r || s.AuditRetention != c.r || s.AuditJustification != c.why {
			t.Fatalf("set %v (%q): keeps %v (%q)", c.r, c.why, s.AuditKeep(), s.AuditJustification)
		}
	}
	// Each is a governance change: its signed envelope is in the ledger,
	// and replays.
	if got := len(s.Ledger) - ledger; got != 4 {
		t.Fatalf("%d audit.retention envelopes in the ledger, want 4", got)
	}
	var v State
	for i, e := range s.Ledger {
		if _, err := v.Apply(e); err != nil {
			t.Fatalf("ledger entry %d: %v", i+1, err)
		}
	}
	if v.AuditKeep() != 30*aDay {
		t.Fatalf("the replayed ledger keeps audit entries %v", v.AuditKeep())
	}
}

// Once sealed, one admin can neither shorten nor lengthen how long the
// trail of what admins did is kept: the quorum decides.
func TestAuditRetentionNeedsTheQuorum(t *testing.T) {
	f := newReqFed(t)
	refused(t, f.s, setAuditRetention(t, f.users["alice"], 365*aDay, auditWhy, tc), "needs the quorum's approval")
	inner := cmd(KindSetAuditRetention, tc)
	inner.AuditRetention = &AuditRetention{Retention: 365 * aDay, Justification: auditWhy}
	f.govern(t, "alice", []string{"bob", "carol"}, inner, tc)
	if f.s.AuditKeep() != 365*aDay {
		t.Fatalf("keeps %v after the quorum approved a year", f.s.AuditKeep())
	}
	// Shortening it back is the same.
	refused(t, f.s, setAuditRetention(t, f.users["frank"], 30*aDay, "", tc), "needs the quorum's approval")
	// A proposal that could never run is refused before anyone approves.
	bad := cmd(KindSetAuditRetention, tc)
	bad.AuditRetention = &AuditRetention{Retention: aDay}
	env, _ := f.proposal(t, "alice", bad, tc)
	refused(t, f.s, env, "audit retention 24h0m0s is shorter than 720h0m0s")
}
