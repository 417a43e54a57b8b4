package node

import (
	"testing"
	"time"
)

func FuzzDecodeToken(f *testing.F) {
	f.Add("custos1.eyJ2IjoxfQ.AAAA")
	f.Add("custos1..")
	f.Add("")
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := DecodeToken(s, now)
		if err == nil && (tok == nil || len(tok.Secret) != 32 || len(tok.Datacenters) == 0) {
			t.Fatalf("accepted an incomplete token %q", s)
		}
	})
}
