package gdpr

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/policy"
)

// current is a DPIA record for every site with cameras, at the input's
// index, and every camera's add index known and older.
func current(in *Input) map[string]uint64 {
	in.CameraAdded = map[string]uint64{"praha-1/entrance": 10, "praha-1/till": 11, "brno/yard": 12}
	return map[string]uint64{"praha-1": in.Index, "brno": in.Index}
}

func codes(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Code+" "+f.Site+" "+f.Camera)
	}
	return out
}

func TestCheck(t *testing.T) {
	cases := []struct {
		name string
		edit func(in *Input, last map[string]uint64) map[string]uint64
		want []string // Code Site Camera, in order
		text string   // in the first finding's text
	}{
		{"all current", nil, nil, ""},
		{"no controller", func(in *Input, last map[string]uint64) map[string]uint64 {
			in.Controller = Controller{}
			return last
		}, []string{"no-controller  ", "no-dpo  "}, "no controller is set"},
		{"no DPO", func(in *Input, last map[string]uint64) map[string]uint64 {
			in.Controller.DPOName, in.Controller.DPOEmail, in.Controller.DPOPhone = "", "", ""
			return last
		}, []string{"no-dpo  "}, "art. 37(1)(b)"},
		{"DPO without contact", func(in *Input, last map[string]uint64) map[string]uint64 {
			in.Controller.DPOEmail, in.Controller.DPOPhone = "", ""
			return last
		}, []string{"dpo-contact  "}, "art. 13(1)(b)"},
		{"controller without email", func(in *Input, last map[string]uint64) map[string]uint64 {
			in.Controller.Email = ""
			return last
		}, []string{"controller-contact  "}, "KAMEROVÉ ŘEŠENÍ TĚŠÍN"},
		{"retention over 72 h without justification", func(in *Input, last map[string]uint64) map[string]uint64 {
			in.State.Cameras["praha-1/till"].Justification = " "
			return last
		}, []string{"retention-unjustified praha-1 praha-1/till"}, "camera praha-1/till keeps footage 168h0m0s, above the default 72h0m0s, without a justification"},
		{"retention of exactly 72 h needs none", func(in *Input, last map[string]uint64) map[string]uint64 {
			in.State.Cameras["praha-1/till"].Justification = ""
			in.State.Cameras["praha-1/till"].Retention = policy.DefaultRetention
			return last
		}, nil, ""},
		{"camera without purpose or legal basis", func(in *Input, last map[string]uint64) map[string]uint64 {
			in.State.Cameras["brno/yard"].Purpose = ""
			in.State.Cameras["brno/yard"].LegalBasis = ""
			return last
		}, []string{"no-legal-basis brno brno/yard", "no-purpose brno brno/yard"}, "art. 6"},
		{"no DPIA of a site", func(in *Input, last map[string]uint64) map[string]uint64 {
			delete(last, "brno")
			return last
		}, []string{"no-dpia brno "}, "site brno has 1 camera(s) and no DPIA"},
		{"no DPIA at all", func(in *Input, last map[string]uint64) map[string]uint64 {
			return nil
		}, []string{"no-dpia brno ", "no-dpia praha-1 "}, ""},
		{"camera added after the DPIA", func(in *Input, last map[string]uint64) map[string]uint64 {
			last["praha-1"] = 1200
			in.CameraAdded["praha-1/till"] = 1201
			return last
		}, []string{"camera-after-dpia praha-1 praha-1/till"}, "camera praha-1/till was added at policy index 1201, after the site's last DPIA (index 1200)"},
		{"camera added at the DPIA's index is covered", func(in *Input, last map[string]uint64) map[string]uint64 {
			last["praha-1"] = 1200
			in.CameraAdded["praha-1/till"] = 1200
			return last
		}, nil, ""},
		{"add index unknown, DPIA older than the policy", func(in *Input, last map[string]uint64) map[string]uint64 {
			in.CameraAdded = nil
			last["praha-1"] = 1000
			return last
		}, []string{"dpia-unverifiable praha-1 "}, "does not record when cameras entrance, till were added"},
		{"add index unknown, DPIA at the policy's index", func(in *Input, last map[string]uint64) map[string]uint64 {
			in.CameraAdded = nil
			return last
		}, nil, ""},
		{"DPIA ahead of this policy", func(in *Input, last map[string]uint64) map[string]uint64 {
			last["brno"] = in.Index + 5
			return last
		}, []string{"dpia-ahead brno "}, "after this policy's index 1234"},
		{"replicas allowed outside the EEA", func(in *Input, last map[string]uint64) map[string]uint64 {
			in.State.DataJurisdictions = []string{"EU", "US"}
			return last
		}, []string{"transfer-outside-eea  "}, "in US, outside the EU/EEA"},
		{"no policy", func(in *Input, last map[string]uint64) map[string]uint64 {
			in.State = nil
			return last
		}, []string{"no-policy  "}, "no policy"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := input("en")
			last := current(&in)
			if c.edit != nil {
				last = c.edit(&in, last)
			}
			got := Check(in, last)
			if !slices.Equal(codes(got), c.want) {
				t.Fatalf("findings %q, want %q", codes(got), c.want)
			}
			if c.text != "" && !strings.Contains(got[0].Text, c.text) {
				t.Fatalf("finding %q does not say %q", got[0].Text, c.text)
			}
		})
	}
}

// TestCheckAfterGenerating: a site whose DPIA was generated at the index
// Check is run at has no DPIA finding; one camera added by a later policy
// shows up by name.
func TestCheckAfterGenerating(t *testing.T) {
	in := input("cs")
	d, err := DPIA(in)
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]uint64{"praha-1": d.Index, "brno": d.Index}
	in.CameraAdded = map[string]uint64{"praha-1/entrance": 5, "praha-1/till": 6, "brno/yard": 7}
	if fs := Check(in, last); len(fs) != 0 {
		t.Fatalf("findings right after generating: %v", fs)
	}
	in.Index++
	in.State.Cameras["praha-1/back-door"] = &policy.Camera{Site: "praha-1", Name: "back-door", Purpose: "Ochrana zadního vchodu",
		LegalBasis: "čl. 6 odst. 1 písm. f)", Retention: 24 * time.Hour}
	in.CameraAdded["praha-1/back-door"] = in.Index
	fs := Check(in, last)
	if len(fs) != 1 || fs[0].Code != "camera-after-dpia" || fs[0].Camera != "praha-1/back-door" {
		t.Fatalf("findings %v, want the new camera after the DPIA", fs)
	}
}

// FromPolicy takes the controller, the version and the cameras' add
// versions from the committed state.
func TestFromPolicy(t *testing.T) {
	st := &policy.State{Applied: 42, Controller: &policy.Controller{Name: "Acme", Address: "Praha", Email: "a@acme.cz", DPOName: "Jana", DPOEmail: "dpo@acme.cz"},
		Cameras: map[string]*policy.Camera{"s/a": {Site: "s", Name: "a", Added: 7}, "s/b": {Site: "s", Name: "b"}}}
	in := FromPolicy(st)
	if in.Index != 42 || in.Controller.Name != "Acme" || in.Controller.DPOEmail != "dpo@acme.cz" || in.State != st {
		t.Fatalf("FromPolicy = %+v", in)
	}
	if len(in.CameraAdded) != 1 || in.CameraAdded["s/a"] != 7 {
		t.Fatalf("CameraAdded = %v; want only s/a at 7 (s/b's is not known)", in.CameraAdded)
	}
	if in := FromPolicy(&policy.State{}); in.Controller != (Controller{}) {
		t.Fatalf("no controller: %+v", in.Controller)
	}
}
