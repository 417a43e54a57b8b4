package policy

// The controller and its data protection officer (GDPR arts. 13(1)(a–b),
// 30(1)(a), 33(3)(b), 37(7)). Every document Custos generates — records of
// processing, DPIA, notice, sign, breach report — names who is responsible
// for the cameras and whom to contact, so the policy keeps them once, for
// every admin node, instead of each document carrying its own copy that
// drifts:
//
//   - controller.set: the controller's name, address, email and optional
//     phone, and optionally the DPO's name, email and phone (name and email
//     together or neither). Each set replaces the whole record.
//
// Only admins set it, with one signature: it changes nobody's power.
//
// Texts are stored exactly as given, characters that mean something to
// HTML or PDF (< > & " and Czech quotes „…“) included: escaping belongs to
// each renderer, and a policy that rewrote them would show one thing in a
// document and another in `custos controller show`.

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
)

// KindSetController records the controller and its DPO (Controller).
const KindSetController = "controller.set"

// Bounds of the controller's fields, in bytes.
const (
	MaxControllerName = 200 // a company's or a person's name
	MaxAddress        = 500 // a postal address, lines separated by newlines
	MaxEmail          = 254 // RFC 5321's limit on a forward path
	MaxPhone          = 32
)

// ErrNoController is wrapped by RequireController's error: documents that
// name the controller refuse until controller.set has run.
var ErrNoController = errors.New("policy: no controller")

// Controller is who is responsible for the cameras, and their DPO if they
// have one. The caller fills the contact fields; Apply sets By and Time (a
// payload may carry them only if they equal the command's signer and time).
type Controller struct {
	Name    string `json:"name"`
	Address string `json:"address"` // may span lines
	Email   string `json:"email"`
	Phone   string `json:"phone,omitempty"`

	DPOName  string `json:"dpo_name,omitempty"`
	DPOEmail string `json:"dpo_email,omitempty"`
	DPOPhone string `json:"dpo_phone,omitempty"`

	// Kept by Apply: who last set it, and when.
	By   string    `json:"by,omitempty"`
	Time time.Time `json:"time,omitzero"`
}

// HasDPO reports whether a DPO is named.
func (c *Controller) HasDPO() bool { return c != nil && c.DPOName != "" }

// Contact is the contact point a breach report names (art. 33(3)(b)): the
// DPO if there is one, else the controller itself, as one line of name,
// email and phone.
func (c *Controller) Contact() string {
	if c == nil {
		return ""
	}
	parts := []string{c.Name, c.Email, c.Phone}
	if c.HasDPO() {
		parts = []string{c.DPOName, c.DPOEmail, c.DPOPhone}
	}
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, ", ")
}

// RequireController returns a copy of the controller, or an error wrapping
// ErrNoController that says how to set it.
func (s *State) RequireController() (*Controller, error) {
	if s == nil || s.Controller == nil {
		return nil, fmt.Errorf("%w: the controller and its contact are not set yet (custos controller set --name … --address … --email …); every GDPR document names them", ErrNoController)
	}
	c := *s.Controller
	return &c, nil
}

func (s *State) planSetController(p *Controller, c *Command) (func(), error) {
	if p == nil {
		return nil, errors.New("no controller")
	}
	if err := decisionBy(p.By, p.Time, c); err != nil {
		return nil, fmt.Errorf("controller: %w", err)
	}
	if err := checkController(p); err != nil {
		return nil, fmt.Errorf("controller: %w", err)
	}
	n := *p
	n.By, n.Time = c.Signer, c.Time.UTC()
	return func() { s.Controller = &n }, nil
}

func checkController(p *Controller) error {
	if err := checkLine("name", p.Name, MaxControllerName); err != nil {
		return err
	}
	if err := checkTextMax("address", p.Address, MaxAddress); err != nil {
		return err
	}
	if err := checkEmail("email", p.Email); err != nil {
		return err
	}
	if p.Phone != "" {
		if err := checkPhone("phone", p.Phone); err != nil {
			return err
		}
	}
	if p.DPOName == "" && p.DPOEmail == "" && p.DPOPhone == "" {
		return nil
	}
	switch {
	case p.DPOName == "":
		return errors.New("a DPO needs a name as well as contact details (give the DPO's name and email, or no DPO field)")
	case p.DPOEmail == "":
		return errors.New("a DPO needs an email as well as a name (art. 37(7) publishes the DPO's contact details)")
	}
	if err := checkLine("DPO name", p.DPOName, MaxControllerName); err != nil {
		return err
	}
	if err := checkEmail("DPO email", p.DPOEmail); err != nil {
		return err
	}
	if p.DPOPhone != "" {
		if err := checkPhone("DPO phone", p.DPOPhone); err != nil {
			return err
		}
	}
	return nil
}

// checkTextMax is checkText with a bound of limit bytes: some non-space text,
// no control characters but newline and tab, no invisible formatting
// characters (a right-to-left override would make a document read
// differently from what the policy holds).
func checkTextMax(what, s string, limit int) error {
	switch {
	case strings.TrimSpace(s) == "":
		return needs(what)
	case len(s) > limit:
		return fmt.Errorf("%s of %d bytes is longer than %d", what, len(s), limit)
	}
	for _, r := range s {
		switch {
		case unicode.IsControl(r) && r != '\n' && r != '\t':
			return fmt.Errorf("%s has control character %q", what, r)
		case unicode.Is(unicode.Cf, r):
			return fmt.Errorf("%s has invisible formatting character %q", what, r)
		}
	}
	return nil
}

// needs is the error of a missing field what, with its article.
func needs(what string) error {
	article := "a"
	if strings.ContainsRune("aeiouAEIOU", rune(what[0])) {
		article = "an"
	}
	return fmt.Errorf("needs %s %s", article, what)
}

// checkLine is checkTextMax for a single line: no newline or tab either.
func checkLine(what, s string, limit int) error {
	if err := checkTextMax(what, s, limit); err != nil {
		return err
	}
	if i := strings.IndexAny(s, "\n\t"); i >= 0 {
		return fmt.Errorf("%s has control character %q: it is one line", what, s[i])
	}
	return nil
}

// checkEmail accepts an address that looks like one: local@domain, one @,
// a dot inside the domain, no spaces or control characters, and none of
// the characters that only a display form ("Name <addr>") or a quoted
// local part would need.
func checkEmail(what, s string) error {
	if s == "" {
		return needs(what)
	}
	if len(s) > MaxEmail {
		return fmt.Errorf("%s of %d bytes is longer than %d", what, len(s), MaxEmail)
	}
	for _, r := range s {
		switch {
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
			return fmt.Errorf("%s %q has control character %q", what, s, r)
		case unicode.IsSpace(r):
			return fmt.Errorf("%s %q has a space: give the address alone", what, s)
		case strings.ContainsRune(`<>"(),;:[]\`, r):
			return fmt.Errorf("%s %q has %q: give the address alone (like dpo@example.cz), not a display form", what, s, r)
		}
	}
	local, domain, _ := strings.Cut(s, "@")
	switch n := strings.Count(s, "@"); {
	case n != 1:
		return fmt.Errorf("%s %q has %d @ signs: want exactly one (like dpo@example.cz)", what, s, n)
	case local == "":
		return fmt.Errorf("%s %q has nothing before the @", what, s)
	case !strings.Contains(domain, "."):
		return fmt.Errorf("%s %q: its domain %q has no dot (like example.cz)", what, s, domain)
	case strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") || strings.Contains(domain, ".."):
		return fmt.Errorf("%s %q: its domain %q has an empty label", what, s, domain)
	}
	return nil
}

// checkPhone accepts digits, spaces, '-', '(' and ')', a '+' only first,
// and at least 3 digits (112 is the shortest number worth printing).
func checkPhone(what, s string) error {
	if len(s) > MaxPhone {
		return fmt.Errorf("%s of %d bytes is longer than %d", what, len(s), MaxPhone)
	}
	digits := 0
	for i, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case r == ' ' || r == '-' || r == '(' || r == ')':
		case r == '+' && i == 0:
		case r == '+':
			return fmt.Errorf("%s %q has a '+' that is not its first character", what, s)
		default:
			return fmt.Errorf("%s %q has %q: use digits, spaces, '+', '-', '(' and ')'", what, s, r)
		}
	}
	if digits < 3 {
		return fmt.Errorf("%s %q has %d digits: want at least 3", what, s, digits)
	}
	return nil
}
