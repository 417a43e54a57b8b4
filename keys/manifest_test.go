package keys

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	adminOnce sync.Once
	adminKeys [2]*AdminKey // the exporter, and someone else
)

func testAdmins(t testing.TB) (exporter, other *AdminKey) {
	t.Helper()
	adminOnce.Do(func() {
		for i, n := range []string{"erin", "mallory"} {
			k, err := NewAdminKey(n, time.Now().Add(-time.Hour))
			if err != nil {
				panic(err)
			}
			adminKeys[i] = k
		}
	})
	return adminKeys[0], adminKeys[1]
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// testManifest describes export, an MP4 made from two segments.
func testManifest(export []byte) *Manifest {
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	return &Manifest{
		Version: ManifestVersion, Federation: "acme", RequestID: testRequest, Requester: "rita",
		Approvers: []string{"alice", "bob"}, Purpose: "Theft at the entrance, police case 2026/1234 — « vol »",
		Basis: "GDPR Art. 6(1)(f)", Cameras: []string{"store-1/entrance"},
		From: t0.Add(5 * time.Minute), To: t0.Add(20 * time.Minute),
		Exporter: "rita", ExporterNode: "laptop-rita", Created: time.Date(2026, 5, 2, 8, 30, 0, 123456789, time.UTC),
		Segments: []ManifestSegment{
			{Camera: "store-1/entrance", Start: t0, End: t0.Add(10 * time.Minute), CiphertextSHA256: hexSum([]byte("c1")), PlaintextSHA256: hexSum([]byte("p1")),
				Store: "store-1", Seq: 41, Link: hexSum([]byte("l1"))},
			{Camera: "store-1/entrance", Start: t0.Add(10 * time.Minute), End: t0.Add(20 * time.Minute), CiphertextSHA256: hexSum([]byte("c2")), PlaintextSHA256: hexSum([]byte("p2")),
				Store: "store-1", Seq: 43, Link: hexSum([]byte("l2"))},
		},
		Gaps: []ManifestGap{{Camera: "store-1/entrance", From: t0.Add(10 * time.Minute), To: t0.Add(10 * time.Minute),
			Missing: 1, Reason: "segment 42 is missing from store-1's chain"}},
		Output: ManifestOutput{Name: "export-0042.mp4", Bytes: int64(len(export)), SHA256: hexSum(export), Frames: 900},
	}
}

var testExport = bytes.Repeat([]byte("mp4 box "), 4096)

func TestManifestSignVerify(t *testing.T) {
	exporter, _ := testAdmins(t)
	m := testManifest(testExport)
	m.Created = m.Created.In(time.FixedZone("CEST", 2*3600)) // encoded in UTC
	body, sig, err := SignManifest(exporter, m)
	if err != nil {
		t.Fatal(err)
	}
	got, fp, err := VerifyManifest(body, sig, exporter.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if fp != exporter.Fingerprint() {
		t.Fatalf("signer %s, want %s", fp, exporter.Fingerprint())
	}
	if !got.Created.Equal(m.Created) || got.Created.Location() != time.UTC || got.Output != m.Output || len(got.Segments) != 2 {
		t.Fatalf("decoded %+v", got)
	}
	again, err := MarshalManifest(got)
	if err != nil || !bytes.Equal(again, body) {
		t.Fatalf("re-encoding differs: %v\n%s\n%s", err, again, body)
	}
	if err := CheckExport(got, bytes.NewReader(testExport)); err != nil {
		t.Fatal(err)
	}
}

// TestManifestTamperIsRefused: any changed byte of body or signature, and a
// valid signature by another admin, are refused.
func TestManifestTamperIsRefused(t *testing.T) {
	exporter, other := testAdmins(t)
	body, sig, err := SignManifest(exporter, testManifest(testExport))
	if err != nil {
		t.Fatal(err)
	}
	pub := exporter.PublicKey()
	for i := range body {
		bad := bytes.Clone(body)
		bad[i] ^= 0x01
		if _, _, err := VerifyManifest(bad, sig, pub); !errors.Is(err, ErrManifestSignature) {
			t.Fatalf("body byte %d changed: %v", i, err)
		}
	}
	for i := range sig {
		for _, bit := range []byte{0x01, 0x80} {
			bad := bytes.Clone(sig)
			bad[i] ^= bit
			if _, _, err := VerifyManifest(body, bad, pub); err == nil {
				t.Fatalf("signature byte %d ^ %#x accepted", i, bit)
			}
		}
	}
	for _, bad := range [][]byte{nil, sig[:len(sig)-1], append(bytes.Clone(sig), 0), append(bytes.Clone(sig), sig...)} {
		if _, _, err := VerifyManifest(body, bad, pub); !errors.Is(err, ErrManifestSignature) {
			t.Fatalf("%d-byte signature: %v", len(bad), err)
		}
	}
	if _, _, err := VerifyManifest(body, sig, other.PublicKey()); !errors.Is(err, ErrManifestSignature) {
		t.Fatalf("verified with another admin's key: %v", err)
	}
	body2, sig2, err := SignManifest(other, testManifest(testExport))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := VerifyManifest(body2, sig2, pub); !errors.Is(err, ErrManifestSignature) {
		t.Fatalf("another admin's manifest verified with the exporter's key: %v", err)
	}
	// A signature over the bare body (no domain) is not a manifest signature.
	bare, _ := exporter.Sign(body, time.Now())
	if _, _, err := VerifyManifest(body, bare, pub); !errors.Is(err, ErrManifestSignature) {
		t.Fatalf("signature without the domain accepted: %v", err)
	}
}

func TestParseManifestRefuses(t *testing.T) {
	good, err := MarshalManifest(testManifest(testExport))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseManifest(good); err != nil {
		t.Fatal(err)
	}
	replace := func(old, new string) []byte {
		if !bytes.Contains(good, []byte(old)) {
			t.Fatalf("%q not in the manifest", old)
		}
		return bytes.Replace(good, []byte(old), []byte(new), 1)
	}
	h := hexSum([]byte("c1"))
	for name, tc := range map[string]struct {
		b    []byte
		want string // in the error: refused for the right reason
	}{
		"unknown field":      {replace(`"version": 2,`, `"version": 2, "extra": 1,`), "unknown field"},
		"duplicate key":      {replace(`"requester": "rita",`, `"requester": "rita", "requester": "carol",`), "canonical"},
		"case-folded key":    {replace(`"requester"`, `"Requester"`), "canonical"},
		"trailing data":      {append(bytes.Clone(good), []byte("{}")...), "data after"},
		"trailing space":     {append(bytes.Clone(good), ' '), "canonical"},
		"no final newline":   {good[:len(good)-1], "canonical"},
		"compact JSON":       {compactJSON(good), "canonical"},
		"oversize":           {append(bytes.Clone(good), make([]byte, MaxManifestLen)...), "at most"},
		"version 1":          {replace(`"version": 2`, `"version": 1`), "version 1"},
		"no store":           {replace(`"store": "store-1"`, `"store": ""`), "store"},
		"bad link":           {replace(hexSum([]byte("l1")), "00"), "hex"},
		"gap reason escape":  {replace(`"reason": "segment 42`, `"reason": "\u001b[2Jsegment 42`), "control character"},
		"upper-case hash":    {replace(h, strings.ToUpper(h)), "hex"},
		"short hash":         {replace(h, h[:62]), "hex"},
		"non-hex hash":       {replace(h, "zz"+h[2:]), "hex"},
		"non-UTC time":       {replace(`"2026-05-01T10:05:00Z"`, `"2026-05-01T12:05:00+02:00"`), "canonical"},
		"padded fraction":    {replace(`.123456789Z`, `.1234567890Z`), "canonical"},
		"zero time":          {replace(`"2026-05-01T10:05:00Z"`, `"0001-01-01T00:00:00Z"`), "requested range"},
		"to before from":     {replace(`"2026-05-01T10:20:00Z"`, `"2026-05-01T10:01:00Z"`), "requested range"},
		"requester approves": {replace(`"bob"`, `"rita"`), "requester"},
		"approver twice":     {replace(`"bob"`, `"alice"`), "twice"},
		"no approvers":       {replace("\"approvers\": [\n    \"alice\",\n    \"bob\"\n  ],", `"approvers": [],`), "no approvers"},
		"null approvers":     {replace("\"approvers\": [\n    \"alice\",\n    \"bob\"\n  ],", `"approvers": null,`), "no approvers"},
		"control character":  {replace(`Theft`, `\u001b[2JTheft`), "control character"},
		"bidi override":      {replace(`Theft`, `\u202eTheft`), "control character"},
		"path in name":       {replace(`export-0042.mp4`, `../export.mp4`), "directory"},
		"negative size":      {replace(`"bytes": 32768`, `"bytes": -1`), "negative"},
		"unknown camera":     {replace(`"camera": "store-1/entrance"`, `"camera": "store-1/exit"`), "not among"},
		"string version":     {replace(`"version": 2`, `"version": "2"`), "wrong type"},
		"not JSON":           {[]byte("\x00\x01"), "invalid JSON"},
		"empty":              {nil, "invalid JSON"},
	} {
		_, err := ParseManifest(tc.b)
		if !errors.Is(err, ErrBadManifest) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error about %q", name, err, tc.want)
		}
	}
}

func compactJSON(b []byte) []byte {
	var out bytes.Buffer
	for _, line := range strings.Split(string(b), "\n") {
		out.WriteString(strings.TrimSpace(line))
	}
	out.WriteByte('\n')
	return out.Bytes()
}

func TestMarshalManifestRefuses(t *testing.T) {
	for name, change := range map[string]func(m *Manifest){
		"no segments":      func(m *Manifest) { m.Segments = nil },
		"segment outside":  func(m *Manifest) { m.Segments[0].End = m.From },
		"no cameras":       func(m *Manifest) { m.Cameras = nil },
		"no approvers":     func(m *Manifest) { m.Approvers = []string{} },
		"bad federation":   func(m *Manifest) { m.Federation = "a b" },
		"bad request id":   func(m *Manifest) { m.RequestID = "" },
		"no purpose":       func(m *Manifest) { m.Purpose = "" },
		"invalid UTF-8":    func(m *Manifest) { m.Basis = "\xff" },
		"year 10000":       func(m *Manifest) { m.Created = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
		"bad output hash":  func(m *Manifest) { m.Output.SHA256 = "" },
		"directory output": func(m *Manifest) { m.Output.Name = "a/b.mp4" },
	} {
		m := testManifest(testExport)
		change(m)
		if _, err := MarshalManifest(m); !errors.Is(err, ErrBadManifest) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := MarshalManifest(nil); !errors.Is(err, ErrBadManifest) {
		t.Errorf("nil manifest: %v", err)
	}
}

func TestCheckExport(t *testing.T) {
	m := testManifest(testExport)
	if err := CheckExport(m, bytes.NewReader(testExport)); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, len(testExport) / 2, len(testExport) - 1} {
		bad := bytes.Clone(testExport)
		bad[i] ^= 1
		if err := CheckExport(m, bytes.NewReader(bad)); !errors.Is(err, ErrExportMismatch) {
			t.Errorf("byte %d flipped: %v", i, err)
		}
	}
	for name, b := range map[string][]byte{"truncated": testExport[:len(testExport)-1], "extended": append(bytes.Clone(testExport), 0)} {
		if err := CheckExport(m, bytes.NewReader(b)); !errors.Is(err, ErrExportMismatch) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := CheckExport(nil, bytes.NewReader(testExport)); err == nil {
		t.Error("no manifest: accepted")
	}
}

// TestManifestSignatureWithGnuPG: the documented command checks a manifest
// with a standard tool.
func TestManifestSignatureWithGnuPG(t *testing.T) {
	gpg, err := exec.LookPath("gpg")
	if err != nil {
		t.Skip("gpg not installed")
	}
	exporter, _ := testAdmins(t)
	body, sig, err := SignManifest(exporter, testManifest(testExport))
	if err != nil {
		t.Fatal(err)
	}
	dir, home := t.TempDir(), t.TempDir()
	for name, b := range map[string][]byte{"manifest.json": body, "manifest.sig": sig, "erin.pub": exporter.ArmoredPublicKey()} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(gpg, "--homedir", home, "--batch", "--import", filepath.Join(dir, "erin.pub")).CombinedOutput(); err != nil {
		t.Fatalf("gpg --import: %v\n%s", err, out)
	}
	script := `{ printf 'custos/manifest/v1\0'; cat manifest.json; } | "$GPG" --homedir "$GH" --batch --verify manifest.sig -`
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir, cmd.Env = dir, append(os.Environ(), "GPG="+gpg, "GH="+home)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "Good signature") {
		t.Fatalf("gpg --verify: %v\n%s", err, out)
	}
}

// FuzzParseManifest: garbage never panics, and whatever parses re-encodes
// to exactly the bytes it came from.
func FuzzParseManifest(f *testing.F) {
	good, err := MarshalManifest(testManifest(testExport))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			return
		}
		enc, err := MarshalManifest(m)
		if err != nil || !bytes.Equal(enc, b) {
			t.Fatalf("parsed but re-encodes differently: %v", err)
		}
	})
}

// TestManifestSignatureNonMinimalMPI: the same R and S with a different
// stated bit length (go-crypto reads and verifies it) is refused.
func TestManifestSignatureNonMinimalMPI(t *testing.T) {
	exporter, _ := testAdmins(t)
	body, sig, err := SignManifest(exporter, testManifest(testExport))
	if err != nil {
		t.Fatal(err)
	}
	// v4 packet: header, 4 octets, hashed area, empty unhashed area, hash tag.
	hdr := 2
	if sig[1] >= 192 {
		hdr = 3
	}
	r := hdr + 6 + (int(sig[hdr+4])<<8 | int(sig[hdr+5])) + 2 + 2
	bitLen := int(sig[r])<<8 | int(sig[r+1])
	n := (bitLen + 7) / 8
	other := 8*(n-1) + 1 // same octet count, another bit length
	if other == bitLen {
		other = 8 * n
	}
	bad := bytes.Clone(sig)
	bad[r], bad[r+1] = byte(other>>8), byte(other)
	if _, err := VerifyAdminSignature(exporter.PublicKey(), manifestSigned(body), bad); err != nil {
		t.Logf("go-crypto itself refuses the reshaped signature (%v)", err)
	}
	if _, _, err := VerifyManifest(body, bad, exporter.PublicKey()); !errors.Is(err, ErrManifestSignature) {
		t.Fatalf("R with bit length %d instead of %d: %v", other, bitLen, err)
	}
}
