package gdpr

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/custos-cctv/custos/policy"
)

// Controller is who is responsible for the processing (art. 4(7)) and its
// data protection officer, as every document and sign shows them.
type Controller struct {
	Name, Address, Email, Phone string
	DPOName, DPOEmail, DPOPhone string
}

// Input is what a document is made from.
type Input struct {
	State *policy.State
	// Index is the policy index the state was read at; every document is
	// stamped with it.
	Index      uint64
	Controller Controller
	Site       string // the site of a DPIA, notice or sign
	Lang       string // "cs" or "en"
	// NoticeURL is where the full notice is published; the sign's QR code
	// points there (https only).
	NoticeURL string
	// Measures are the operator's own technical and organisational
	// measures, shown after the ones Custos enforces.
	Measures []string
	// Now is the generation time the documents show. The package reads
	// no clock of its own.
	Now time.Time
	// CameraAdded is, when the caller knows it, the policy index (the
	// same numbering as Index) of the command that added each camera (key
	// "site/name"). The policy does not record it, so Check can tell "a
	// camera added after the last DPIA" only for cameras listed here; the
	// documents do not use it.
	CameraAdded map[string]uint64
}

// FromPolicy is the input the committed state st gives: its controller
// (when set), its version (State.Applied) as the index every document is
// stamped with, and when each camera was added. The caller sets Site,
// Lang, NoticeURL, Measures and Now.
func FromPolicy(st *policy.State) Input {
	in := Input{State: st, Index: st.Applied, CameraAdded: map[string]uint64{}}
	if c := st.Controller; c != nil {
		in.Controller = Controller{Name: c.Name, Address: c.Address, Email: c.Email, Phone: c.Phone,
			DPOName: c.DPOName, DPOEmail: c.DPOEmail, DPOPhone: c.DPOPhone}
	}
	for k, cam := range st.Cameras {
		if cam.Added != 0 {
			in.CameraAdded[k] = cam.Added
		}
	}
	return in
}

// Languages the documents are written in.
var Languages = []string{"cs", "en"}

// maxText bounds any one text the caller gives (names, measures): a
// document is printed, not a data dump.
const maxText = 2000

// checkText refuses text that would not print as written: invalid UTF-8
// and control characters (a tab or newline excepted). HTML and PDF syntax
// characters are fine — the renderers escape them.
func checkText(what, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8", what)
	}
	if len(s) > maxText {
		return fmt.Errorf("%s is %d bytes, longer than %d", what, len(s), maxText)
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			return fmt.Errorf("%s has control character %q", what, r)
		}
	}
	return nil
}

// prepared is an Input checked, with what every document needs.
type prepared struct {
	in   Input
	s    *policy.State
	w    *words
	site *policy.Site // nil for federation-wide documents
	// cams are the cameras the document covers, by key.
	cams []*policy.Camera
}

// prepare checks in for a document; site says whether it covers one site
// (DPIA, notice, sign) or the whole federation (RoPA).
func prepare(in Input, site bool) (*prepared, error) {
	w, err := wordsFor(in.Lang)
	if err != nil {
		return nil, err
	}
	if in.State == nil || in.State.Federation == "" {
		return nil, errors.New("no policy: the node has no federation state yet")
	}
	if in.Index == 0 {
		return nil, errors.New("no policy index: a document must name the policy it was made from")
	}
	if in.Now.IsZero() {
		return nil, errors.New("no generation time")
	}
	if err := checkController(in.Controller); err != nil {
		return nil, err
	}
	for i, m := range in.Measures {
		if strings.TrimSpace(m) == "" {
			return nil, fmt.Errorf("measure %d is empty", i+1)
		}
		if err := checkText(fmt.Sprintf("measure %d", i+1), m); err != nil {
			return nil, err
		}
	}
	p := &prepared{in: in, s: in.State, w: w}
	if site {
		if in.Site == "" {
			return nil, errors.New("no site: name the site the document is for")
		}
		p.site = in.State.Sites[in.Site]
		if p.site == nil {
			return nil, fmt.Errorf("no site %q in the policy (sites: %s)", in.Site, strings.Join(sortedKeys(in.State.Sites), ", "))
		}
	}
	for _, k := range sortedKeys(in.State.Cameras) {
		c := in.State.Cameras[k]
		if site && c.Site != in.Site {
			continue
		}
		p.cams = append(p.cams, c)
	}
	if len(p.cams) == 0 {
		if site {
			return nil, fmt.Errorf("site %q has no cameras: there is no processing to document", in.Site)
		}
		return nil, errors.New("the policy has no cameras: there is no processing to document")
	}
	for _, c := range p.cams {
		if strings.TrimSpace(c.Purpose) == "" {
			return nil, fmt.Errorf("camera %q has no purpose (GDPR art. 5(1)(b)): set one before generating documents", c.Key())
		}
		if strings.TrimSpace(c.LegalBasis) == "" {
			return nil, fmt.Errorf("camera %q has no legal basis (GDPR art. 6): set one before generating documents", c.Key())
		}
		if c.Retention <= 0 {
			return nil, fmt.Errorf("camera %q has no retention period", c.Key())
		}
		for _, f := range []struct{ what, v string }{{"purpose", c.Purpose}, {"legal basis", c.LegalBasis}, {"justification", c.Justification}} {
			if err := checkText(fmt.Sprintf("camera %q %s", c.Key(), f.what), f.v); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

// checkController refuses a controller without a name, and text that
// would not print.
func checkController(c Controller) error {
	if strings.TrimSpace(c.Name) == "" {
		return errors.New("no controller name: set the controller (name, address, email) before generating GDPR documents")
	}
	for _, f := range []struct{ what, v string }{
		{"controller name", c.Name}, {"controller address", c.Address},
		{"controller email", c.Email}, {"controller phone", c.Phone},
		{"DPO name", c.DPOName}, {"DPO email", c.DPOEmail}, {"DPO phone", c.DPOPhone},
	} {
		if err := checkText(f.what, f.v); err != nil {
			return err
		}
	}
	return nil
}

// maxURL bounds the notice URL: the longer the text, the denser the QR
// code, and a dense code on a wall 2 m away does not scan.
const maxURL = 300

// checkNoticeURL accepts an absolute https URL with a host: the sign's QR
// code sends people there.
func checkNoticeURL(s string) error {
	if s == "" {
		return errors.New("no notice URL: the sign's QR code must point to the full notice (https://…)")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("notice URL %q: %v", s, err)
	}
	if u.User != nil {
		// Not quoted back: it may hold a password.
		return errors.New("notice URL must not carry a user name or password: it is printed on a public sign")
	}
	if u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("notice URL %q must be an https:// address with a host: it becomes the sign's QR code", s)
	}
	if len(s) > maxURL {
		return fmt.Errorf("notice URL is %d bytes; a QR code on a sign stays easy to scan up to %d", len(s), maxURL)
	}
	return checkText("notice URL", s)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// Authority is a supervisory authority (art. 51) a data subject may
// complain to (art. 77).
type Authority struct {
	Name    map[string]string // by language
	Address string
	Web     string
}

// Authorities are keyed by jurisdiction; a site's jurisdiction that is not
// listed takes DefaultAuthority: Custos's controllers are Czech, and the
// lead authority is that of the controller's establishment (art. 56).
var Authorities = map[string]Authority{
	"CZ": uoou,
	"EU": uoou,
}

// DefaultAuthority is the key of the authority used when a jurisdiction
// has none of its own.
const DefaultAuthority = "CZ"

var uoou = Authority{
	Name: map[string]string{
		"cs": "Úřad pro ochranu osobních údajů",
		"en": "Office for Personal Data Protection (Úřad pro ochranu osobních údajů)",
	},
	Address: "Pplk. Sochora 27, 170 00 Praha 7",
	Web:     "www.uoou.cz",
}

func authorityFor(jurisdiction string) Authority {
	if a, ok := Authorities[jurisdiction]; ok {
		return a
	}
	return Authorities[DefaultAuthority]
}

// eea are the jurisdictions where the GDPR applies; data kept anywhere
// else is a transfer under chapter V.
var eea = map[string]bool{
	"EU": true, "EEA": true,
	"AT": true, "BE": true, "BG": true, "HR": true, "CY": true, "CZ": true, "DK": true,
	"EE": true, "FI": true, "FR": true, "DE": true, "GR": true, "HU": true, "IE": true,
	"IT": true, "LV": true, "LT": true, "LU": true, "MT": true, "NL": true, "PL": true,
	"PT": true, "RO": true, "SK": true, "SI": true, "ES": true, "SE": true,
	"IS": true, "LI": true, "NO": true,
}

// InEEA reports whether jurisdiction j is inside the EU/EEA.
func InEEA(j string) bool { return eea[j] }
