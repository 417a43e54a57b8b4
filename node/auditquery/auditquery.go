// Package auditquery owns the question an auditor asks across sites ("who
// saw camera X last week?"): a query signed by a user the policy lets read
// audit journals (role admin or auditor), the datacenters' answer from the
// copies they keep of every store's journal and from their own, and the
// merge of several datacenters' answers into one list.
//
// The query is signed, not merely sent by an admin node: the journals are
// personal data of staff and visitors alike, so each datacenter checks by
// the policy which person asks and records that person, with the filters,
// in its own journal. Only admin nodes may carry a query (the central
// admins' machines); a store or an installer cannot, whatever key it holds.
//
// The signature covers the federation ID, the signer, the time, a nonce and
// every filter (SignedBytes), and is accepted within policy.SignatureSkew of
// its time, so a query seen once cannot be widened or kept for later.
package auditquery

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// Op is the node-to-node op a datacenter serves: body Signed, answer
// frames of JSON []Row.
const Op = "audit-query"

const (
	// DefaultLimit is how many entries an answer holds unless the query
	// says otherwise; MaxLimit the most it may ask for (an answer stays
	// well inside the rpc reader's memory bound).
	DefaultLimit = 1000
	MaxLimit     = 50000
	// rowsPerFrame keeps each answer frame far below rpc's frame limit.
	rowsPerFrame = 256
	maxFilter    = 256
	signDomain   = "custos/audit-query/v1\x00"
)

// Query is what an auditor asks. Empty filters match everything.
type Query struct {
	Federation string    `json:"federation"` // policy.State.FederationID
	User       string    `json:"user"`       // the signer, a user of the policy
	Time       time.Time `json:"time"`       // when it was signed
	Nonce      string    `json:"nonce"`

	Site   string    `json:"site,omitempty"`   // journals of this site's stores only
	Actor  string    `json:"actor,omitempty"`  // who acted: a user or node name, or a node key
	Action string    `json:"action,omitempty"` // exact action (live-view, serve-segments, …)
	Object string    `json:"object,omitempty"` // text the object contains (a camera, a request)
	Since  time.Time `json:"since,omitzero"`
	Until  time.Time `json:"until,omitzero"`
	Limit  int       `json:"limit,omitempty"` // DefaultLimit when 0
}

// Signed is the op's body: the query's JSON and the user's detached
// OpenPGP signature over SignedBytes of it.
type Signed struct {
	Query []byte `json:"query"`
	Sig   []byte `json:"sig"`
}

// Row is one entry as an answer holds it: the journal it comes from (the
// node that recorded it) and that node's site ("" for datacenters and
// admin nodes).
type Row struct {
	Site string `json:"site,omitempty"`
	audit.Entry
}

// SignedBytes is what the user signs: a domain, the federation, and the
// query's JSON.
func SignedBytes(federation string, query []byte) []byte {
	return append([]byte(signDomain+federation+"\x00"), query...)
}

// Sign completes q (time, nonce) and signs it with k: the body of Op.
func Sign(q *Query, k *keys.AdminKey) ([]byte, error) {
	q.Time = time.Now().UTC()
	q.Nonce = NewNonce()
	if err := q.Check(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(q)
	if err != nil {
		return nil, err
	}
	sig, err := k.Sign(SignedBytes(q.Federation, b), q.Time)
	if err != nil {
		return nil, err
	}
	return json.Marshal(Signed{Query: b, Sig: sig})
}

// NewNonce returns a fresh random nonce.
func NewNonce() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Check refuses a query no datacenter should run: filters too long or not
// text, a window that ends before it starts, a limit out of range.
func (q *Query) Check() error {
	for _, f := range []struct{ name, v string }{{"site", q.Site}, {"actor", q.Actor}, {"action", q.Action}, {"object", q.Object}} {
		if len(f.v) > maxFilter || !utf8.ValidString(f.v) {
			return fmt.Errorf("audit query: %s must be text of at most %d bytes", f.name, maxFilter)
		}
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && q.Until.Before(q.Since) {
		return fmt.Errorf("audit query: until %s is before since %s", q.Until.UTC().Format(time.RFC3339), q.Since.UTC().Format(time.RFC3339))
	}
	if q.Limit < 0 || q.Limit > MaxLimit {
		return fmt.Errorf("audit query: limit %d is outside 1..%d", q.Limit, MaxLimit)
	}
	if q.Nonce == "" || len(q.Nonce) > 64 {
		return errors.New("audit query: no nonce")
	}
	return nil
}

// Verify decodes body and checks, by the policy st at now, that a current
// user who may read audit journals signed it for this federation within
// the allowed skew. It returns the query and why it was allowed.
func Verify(st *policy.State, body []byte, now time.Time) (*Query, string, error) {
	var s Signed
	if err := strictJSON(body, &s); err != nil {
		return nil, "", fmt.Errorf("audit query: %w", err)
	}
	var q Query
	if err := strictJSON(s.Query, &q); err != nil {
		return nil, "", fmt.Errorf("audit query: %w", err)
	}
	if err := q.Check(); err != nil {
		return &q, "", err
	}
	if st == nil || st.FederationID == "" || q.Federation != st.FederationID {
		return &q, "", errors.New("audit query: signed for another federation")
	}
	if d := now.Sub(q.Time); d > policy.SignatureSkew || d < -policy.SignatureSkew {
		return &q, "", fmt.Errorf("audit query: signed at %s, more than %v from now: sign it again", q.Time.UTC().Format(time.RFC3339), policy.SignatureSkew)
	}
	u := st.Users[q.User]
	d := policy.Authorize(st, policy.Subject{Kind: "user", Name: q.User}, policy.ActAudit, "", now)
	if !d.Allow {
		if u != nil && !u.Revoked {
			// Authorize's reason for a role without the duty speaks of grants.
			return &q, "", fmt.Errorf("audit query: user %q has role %s; reading audit journals takes role admin or auditor", q.User, u.Role)
		}
		return &q, "", fmt.Errorf("audit query: %s", d.Reason)
	}
	fp, err := policy.VerifySignature(u.PublicKey, SignedBytes(st.FederationID, s.Query), s.Sig, q.Time)
	if err != nil {
		return &q, "", fmt.Errorf("audit query: signature of %q: %w", q.User, err)
	}
	if fp != u.Fingerprint {
		return &q, "", fmt.Errorf("audit query: signed by key %s, not %q's key", fp, q.User)
	}
	return &q, d.Reason, nil
}

// Describe is the query's filters as one line, for the journal.
func (q *Query) Describe() string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	add("site", q.Site)
	add("actor", q.Actor)
	add("action", q.Action)
	add("object", q.Object)
	if !q.Since.IsZero() {
		add("since", q.Since.UTC().Format(time.RFC3339))
	}
	if !q.Until.IsZero() {
		add("until", q.Until.UTC().Format(time.RFC3339))
	}
	if len(parts) == 0 {
		return "everything"
	}
	return strings.Join(parts, " ")
}

// Matcher tests entries against a query, knowing from the policy which
// keys belong to the actor asked about.
type Matcher struct {
	q      *Query
	actors map[string]bool
	// The filters as they appear in a journal line, so a line that
	// cannot match is skipped before it is decoded (decoding checks the
	// entry's hash, which is most of a scan's cost).
	action, object []byte
	actorKeys      [][]byte
}

// NewMatcher makes the matcher of q by the policy st.
func NewMatcher(st *policy.State, q *Query) *Matcher {
	m := &Matcher{q: q}
	if a := q.Actor; a != "" {
		m.actors = map[string]bool{a: true, "user:" + a: true, "node:" + a: true}
		if st != nil {
			if n := st.Nodes[a]; n != nil {
				m.actors[n.PublicKey] = true
			}
			if name := st.NameOfKey(a); name != "" {
				m.actors[name] = true
			}
		}
		for k := range m.actors {
			m.actorKeys = append(m.actorKeys, append([]byte(`"actor":`), jsonText(k)...))
		}
	}
	if q.Action != "" {
		m.action = append([]byte(`"action":`), jsonText(q.Action)...)
	}
	if q.Object != "" {
		o := jsonText(q.Object)
		m.object = o[1 : len(o)-1] // JSON escapes each character alone, so a substring's escape is a substring
	}
	return m
}

// jsonText is s as encoding/json writes it in a journal line, quoted.
func jsonText(s string) []byte {
	b, _ := json.Marshal(s) // a string always encodes
	return b
}

// MayMatch reports whether a journal line may match: false only when it
// certainly does not.
func (m *Matcher) MayMatch(line []byte) bool {
	if m.action != nil && !bytes.Contains(line, m.action) {
		return false
	}
	if m.object != nil && !bytes.Contains(line, m.object) {
		return false
	}
	if m.actorKeys == nil {
		return true
	}
	for _, k := range m.actorKeys {
		if bytes.Contains(line, k) {
			return true
		}
	}
	return false
}

// Journal reports whether entries of a journal of site may match at all.
func (m *Matcher) Journal(site string) bool { return m.q.Site == "" || m.q.Site == site }

// Match reports whether e matches every filter.
func (m *Matcher) Match(e *audit.Entry) bool {
	q := m.q
	switch {
	case !q.Since.IsZero() && e.Time.Before(q.Since):
		return false
	case !q.Until.IsZero() && !e.Time.Before(q.Until):
		return false
	case q.Action != "" && e.Action != q.Action:
		return false
	case q.Object != "" && !strings.Contains(e.Object, q.Object):
		return false
	case m.actors != nil && !m.actors[e.Actor]:
		return false
	}
	return true
}

// Limit is how many rows the query may have.
func (q *Query) limit() int {
	if q.Limit == 0 {
		return DefaultLimit
	}
	return q.Limit
}

// Collector gathers matching rows up to the query's limit, keeping the
// newest when there are more (an auditor reads the latest first).
type Collector struct {
	m    *Matcher
	rows []Row
	// More is how many matching entries were left out for the limit.
	More int
}

// NewCollector collects rows for m.
func NewCollector(m *Matcher) *Collector { return &Collector{m: m} }

// Matches reports whether entries of a journal of site may match at all.
func (c *Collector) Matches(site string) bool { return c.m.Journal(site) }

// Add adds e of a journal of site if it matches.
func (c *Collector) Add(site string, e audit.Entry) {
	if !c.m.Match(&e) {
		return
	}
	c.rows = append(c.rows, Row{Site: site, Entry: e})
	// Trim in batches so a huge journal costs memory of twice the limit.
	if lim := c.m.q.limit(); len(c.rows) >= 2*lim {
		c.trim(lim)
	}
}

func (c *Collector) trim(lim int) {
	if len(c.rows) <= lim {
		return
	}
	sortRows(c.rows)
	drop := len(c.rows) - lim
	c.More += drop
	c.rows = slices.Delete(c.rows, 0, drop)
}

// Rows returns the rows, oldest first, at most the limit.
func (c *Collector) Rows() []Row {
	c.trim(c.m.q.limit())
	sortRows(c.rows)
	return c.rows
}

// ScanFile feeds every entry of a journal file (a datacenter's copy of a
// store's journal) of site to c. A last line without its newline (an
// append in progress) is skipped; a line that does not decode is an error
// naming the file and the line.
func (c *Collector) ScanFile(path, site string) error {
	if !c.m.Journal(site) {
		return nil
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	for n := 1; ; n++ {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return fmt.Errorf("%s: line %d is longer than %d bytes", path, n, audit.MaxLineBytes)
		}
		if err == io.EOF {
			return nil // an unterminated tail, or the end
		}
		if err != nil {
			return err
		}
		if !c.m.MayMatch(line) {
			continue
		}
		e, err := audit.DecodeEntry(line)
		if err != nil {
			return fmt.Errorf("%s: line %d: %w", path, n, err)
		}
		c.Add(site, e)
	}
}

// Frames encodes rows as answer frames.
func Frames(rows []Row) ([][]byte, error) {
	var out [][]byte
	for len(rows) > 0 {
		n := min(len(rows), rowsPerFrame)
		b, err := json.Marshal(rows[:n])
		if err != nil {
			return nil, err
		}
		out = append(out, b)
		rows = rows[n:]
	}
	return out, nil
}

// DecodeFrames decodes an answer and checks every entry's hash, so a row
// that was altered on its way (or by the datacenter) is refused.
func DecodeFrames(frames [][]byte) ([]Row, error) {
	var out []Row
	for _, f := range frames {
		var raw []json.RawMessage
		if err := json.Unmarshal(f, &raw); err != nil {
			return nil, fmt.Errorf("audit query: answer: %w", err)
		}
		for _, r := range raw {
			row, err := decodeRow(r)
			if err != nil {
				return nil, err
			}
			out = append(out, row)
		}
	}
	return out, nil
}

// decodeRow reads a row and checks the entry's hash by re-encoding it as
// its journal line.
func decodeRow(b []byte) (Row, error) {
	var r Row
	if err := json.Unmarshal(b, &r); err != nil {
		return Row{}, fmt.Errorf("audit query: answer row: %w", err)
	}
	line, err := r.Entry.Line()
	if err != nil {
		return Row{}, fmt.Errorf("audit query: answer row: %w", err)
	}
	if _, err := audit.DecodeEntry(line); err != nil {
		return Row{}, fmt.Errorf("audit query: answer row of %s: %w", r.Node, err)
	}
	return r, nil
}

// Merge joins several datacenters' answers: the same entry (one node's
// sequence number) held by both is shown once; the rest in time order,
// the newest limit kept.
func Merge(limit int, answers ...[]Row) (rows []Row, more int) {
	if limit <= 0 {
		limit = DefaultLimit
	}
	seen := map[string]bool{}
	for _, a := range answers {
		for _, r := range a {
			k := fmt.Sprintf("%s\x00%d", r.Node, r.Seq)
			if !seen[k] {
				seen[k] = true
				rows = append(rows, r)
			}
		}
	}
	sortRows(rows)
	if len(rows) > limit {
		more = len(rows) - limit
		rows = rows[more:]
	}
	return rows, more
}

func sortRows(rows []Row) {
	slices.SortStableFunc(rows, func(a, b Row) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Node, b.Node), cmp.Compare(a.Seq, b.Seq))
	})
}

func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}
