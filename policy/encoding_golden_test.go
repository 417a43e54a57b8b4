package policy

import (
	"testing"
	"time"
)

// A state without a controller, breaches or an audit retention encodes as
// it did before they existed, byte for byte: snapshots, and anything that
// hashes or compares them, are unchanged until a command sets one.
func TestStateEncodingWithoutGDPRFieldsIsPinned(t *testing.T) {
	s := &State{Federation: "acme", FederationID: "0123", Clock: t0,
		Sites:     map[string]*Site{"praha-1": {Name: "praha-1", Jurisdiction: "EU"}},
		Cameras:   map[string]*Camera{"praha-1/entrance": {Site: "praha-1", Name: "entrance", Purpose: "p", LegalBasis: "b", Retention: DefaultRetention}},
		Threshold: 2, SealedAt: t0, Seen: map[string]time.Time{"c1": t0}, Applied: 3}
	const want = `{"federation":"acme","federation_id":"0123","clock":"2026-11-27T08:00:00Z",` +
		`"sites":{"praha-1":{"name":"praha-1","jurisdiction":"EU"}},` +
		`"cameras":{"praha-1/entrance":{"site":"praha-1","name":"entrance","purpose":"p","legal_basis":"b","retention":259200000000000}},` +
		`"threshold":2,"sealed_at":"2026-11-27T08:00:00Z","seen":{"c1":"2026-11-27T08:00:00Z"},"applied":3}`
	pinState(t, s, want)
	// Applying a command makes the breach map, and an empty one is dropped.
	s.ensureMaps()
	pinState(t, s, want)
}

// The JSON names of the GDPR fields are pinned: logs and snapshots already
// written carry them.
func TestStateEncodingOfGDPRFieldsIsPinned(t *testing.T) {
	s := &State{Federation: "acme",
		Controller: &Controller{Name: "N", Address: "A", Email: "e@x.cz", DPOName: "D", DPOEmail: "d@x.cz", By: "alice", Time: t0},
		Breaches: map[string]*Breach{"b-1": {ID: "b-1", What: "w", Detected: t0, ApproxSubjects: 5, Notified: t0.Add(time.Hour),
			OpenedBy: "alice", Opened: t0,
			Closure: &BreachClosure{Breach: "b-1", Closed: t0.Add(2 * time.Hour), Outcome: "o", By: "alice", Time: t0.Add(2 * time.Hour)}}},
		AuditRetention: 60 * 24 * time.Hour, AuditJustification: "j", Applied: 9}
	const want = `{"federation":"acme",` +
		`"controller":{"name":"N","address":"A","email":"e@x.cz","dpo_name":"D","dpo_email":"d@x.cz","by":"alice","time":"2026-11-27T08:00:00Z"},` +
		`"breaches":{"b-1":{"id":"b-1","what":"w","detected":"2026-11-27T08:00:00Z","approx_subjects":5,"notified":"2026-11-27T09:00:00Z",` +
		`"opened_by":"alice","opened":"2026-11-27T08:00:00Z",` +
		`"closure":{"breach":"b-1","closed":"2026-11-27T10:00:00Z","outcome":"o","by":"alice","time":"2026-11-27T10:00:00Z"}}},` +
		`"audit_retention":5184000000000000,"audit_justification":"j","applied":9}`
	pinState(t, s, want)
}

func pinState(t *testing.T, s *State, want string) {
	t.Helper()
	got, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("state encodes as\n%s\nwant\n%s", got, want)
	}
	var r State
	if err := r.Unmarshal(got); err != nil {
		t.Fatal(err)
	}
	if again, _ := r.Marshal(); string(again) != want {
		t.Fatalf("decoded and encoded again:\n%s\nwant\n%s", again, want)
	}
}

// The commands' JSON, as the CLI writes them and the log keeps them.
func TestGDPRCommandEncodingIsPinned(t *testing.T) {
	const head = `{"id":"c1","time":"2026-11-27T08:00:00Z","signer":"alice","kind":`
	for _, c := range []struct {
		cmd  Command
		want string
	}{
		{Command{Kind: KindSetController, Controller: &Controller{Name: "N", Address: "A", Email: "e@x.cz", Phone: "+420 123",
			DPOName: "D", DPOEmail: "d@x.cz", DPOPhone: "112"}},
			`"controller.set","controller":{"name":"N","address":"A","email":"e@x.cz","phone":"+420 123","dpo_name":"D","dpo_email":"d@x.cz","dpo_phone":"112"}}`},
		{Command{Kind: KindOpenBreach, Breach: &Breach{ID: "b-1", What: "w", Detected: t0, Nature: "n", Categories: "c",
			ApproxSubjects: 5, ApproxRecords: 6, Consequences: "q", Measures: "m", Contact: "k"}},
			`"breach.open","breach":{"id":"b-1","what":"w","detected":"2026-11-27T08:00:00Z","nature":"n","categories":"c",` +
				`"approx_subjects":5,"approx_records":6,"consequences":"q","measures":"m","contact":"k"}}`},
		{Command{Kind: KindUpdateBreach, BreachUpdate: &BreachUpdate{Breach: "b-1", Notified: t0.Add(time.Hour), LateReason: "l"}},
			`"breach.update","breach_update":{"breach":"b-1","notified":"2026-11-27T09:00:00Z","late_reason":"l"}}`},
		{Command{Kind: KindCloseBreach, BreachClosure: &BreachClosure{Breach: "b-1", Closed: t0.Add(2 * time.Hour), Outcome: "o", NotNotifiedReason: "r"}},
			`"breach.close","breach_closure":{"breach":"b-1","closed":"2026-11-27T10:00:00Z","outcome":"o","not_notified_reason":"r"}}`},
		{Command{Kind: KindSetAuditRetention, AuditRetention: &AuditRetention{Retention: 60 * 24 * time.Hour, Justification: "j"}},
			`"audit.retention","audit_retention":{"retention":5184000000000000,"justification":"j"}}`},
	} {
		c.cmd.ID, c.cmd.Time, c.cmd.Signer = "c1", t0, "alice"
		got, err := EncodeCommand(&c.cmd)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != head+c.want {
			t.Errorf("%s encodes as\n%s\nwant\n%s", c.cmd.Kind, got, head+c.want)
		}
		if _, err := DecodeCommand(got); err != nil {
			t.Errorf("%s does not decode: %v", c.cmd.Kind, err)
		}
	}
}
