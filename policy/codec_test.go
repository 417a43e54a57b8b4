package policy

import (
	"errors"
	"testing"
)

// A synthetic camera may name its codec (h264 or h265), nothing else; the
// parameter came in protocol 2, so such a camera.add is stamped 2 and a
// protocol-1 replica neither applies nor refuses it (refusing what others
// apply would split the replicas). A camera without it stays protocol 1.
func TestProtocolSyntheticCodec(t *testing.T) {
	alice := newTestUser(t, "alice")
	s := founded(t, alice)
	camera := func(name, src string) (Envelope, *Command) {
		c := cmd(KindAddCamera, t0)
		c.Camera = &Camera{Site: "praha-1", Name: name, Source: src, Purpose: "theft", LegalBasis: "art. 6(1)(f)", Retention: DefaultRetention}
		return alice.sign(t, c), c
	}
	env, c := camera("c265", "synthetic:?codec=h265")
	if _, need := Needs(env.Body); need != 2 || c.Protocol != 2 {
		t.Fatalf("synthetic:?codec=h265 needs %d, stamped %d; want 2", need, c.Protocol)
	}
	if env, c := camera("c264", "synthetic:?fps=10"); c.Protocol != 0 {
		t.Fatalf("a synthetic camera without codec stamped %d", c.Protocol)
	} else if _, need := Needs(env.Body); need != 1 {
		t.Fatalf("a synthetic camera without codec needs %d", need)
	}
	if Protocol < 2 {
		if _, err := s.Apply(env); !errors.Is(err, ErrNewerProtocol) {
			t.Fatalf("a protocol-%d replica: %v, want ErrNewerProtocol", Protocol, err)
		}
		return
	}
	mustApply(t, s, env)
	if got := s.Cameras["praha-1/c265"]; got == nil || got.Source != "synthetic:?codec=h265" {
		t.Fatalf("camera not added: %+v", got)
	}
	bad, _ := camera("cvp8", "synthetic:?codec=vp8")
	refused(t, s, bad, `codec="vp8": want h264 or h265`)
}
