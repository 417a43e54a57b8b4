package gdpr

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/custos-cctv/custos/policy"
)

// The pieces several documents share: the stamp, the controller, retention,
// recipients from the policy's grants, users and nodes, transfers, measures.

func (p *prepared) newDoc(kind Kind, title, subtitle string) *Doc {
	return &Doc{
		Kind:      kind,
		Lang:      p.in.Lang,
		Title:     title,
		Subtitle:  subtitle,
		Index:     p.in.Index,
		Generated: p.in.Now.UTC(),
		Stamp:     fmt.Sprintf(p.w.Stamp, p.in.Index, p.when(p.in.Now)),
	}
}

func (p *prepared) when(t time.Time) string { return t.UTC().Format(p.w.TimeFmt) }

// or is v, or the "not given" word when v is blank.
func (p *prepared) or(v string) string {
	if strings.TrimSpace(v) == "" {
		return p.w.NotGiven
	}
	return v
}

// controllerFields are the controller's identity and contact details.
func (p *prepared) controllerFields() Block {
	c, w := p.in.Controller, p.w
	return Block{Kind: Fields, Rows: [][]string{
		{w.Controller, c.Name},
		{w.Address, p.or(c.Address)},
		{w.Email, p.or(c.Email)},
		{w.Phone, p.or(c.Phone)},
	}}
}

func (p *prepared) hasDPO() bool {
	c := p.in.Controller
	return strings.TrimSpace(c.DPOName) != "" || strings.TrimSpace(c.DPOEmail) != "" || strings.TrimSpace(c.DPOPhone) != ""
}

// dpoBlock is the DPO's contact details, or a paragraph saying there is
// none named.
func (p *prepared) dpoBlock() Block {
	c, w := p.in.Controller, p.w
	if !p.hasDPO() {
		return Block{Kind: Para, Text: w.NoDPO}
	}
	return Block{Kind: Fields, Rows: [][]string{
		{w.DPO, p.or(c.DPOName)},
		{w.DPOEmail, p.or(c.DPOEmail)},
		{w.DPOPhone, p.or(c.DPOPhone)},
	}}
}

// duration writes a retention period in words: days when whole, else
// hours, else minutes.
func (p *prepared) duration(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0:
		days := int(d / (24 * time.Hour))
		return fmt.Sprintf("%s (%s)", p.w.Days(days), p.w.Hours(days*24))
	case d%time.Hour == 0:
		return p.w.Hours(int(d / time.Hour))
	case d%time.Minute == 0:
		return p.w.Minutes(int(d / time.Minute))
	}
	return d.String()
}

// retentionNote says whether c's retention is within the default or how
// it is justified.
func (p *prepared) retentionNote(c *policy.Camera) string {
	switch {
	case c.Retention <= policy.DefaultRetention:
		return p.w.WithinDefault
	case strings.TrimSpace(c.Justification) == "":
		return p.w.AboveDefaultUnjustified
	}
	return fmt.Sprintf(p.w.AboveDefault, c.Justification)
}

// purposesTable lists the cameras with purpose and legal basis.
func (p *prepared) purposesTable() Block {
	w := p.w
	b := Block{Kind: Table, Head: []string{w.ColCamera, w.ColPurpose, w.ColBasis}}
	for _, c := range p.cams {
		b.Rows = append(b.Rows, []string{c.Key(), c.Purpose, c.LegalBasis})
	}
	return b
}

// retentionTable lists each camera's retention and its justification.
func (p *prepared) retentionTable() Block {
	w := p.w
	b := Block{Kind: Table, Head: []string{w.ColCamera, w.ColRetention, w.ColJustification}}
	for _, c := range p.cams {
		b.Rows = append(b.Rows, []string{c.Key(), p.duration(c.Retention), p.retentionNote(c)})
	}
	return b
}

func (p *prepared) window(win policy.Window) string {
	switch {
	case win.From.IsZero() && win.Until.IsZero():
		return p.w.NoLimit
	case win.Until.IsZero():
		return fmt.Sprintf(p.w.From, p.when(win.From))
	case win.From.IsZero():
		return fmt.Sprintf(p.w.Until, p.when(win.Until))
	}
	return fmt.Sprintf(p.w.FromUntil, p.when(win.From), p.when(win.Until))
}

func lookup(m map[string]string, k string) string {
	if v, ok := m[k]; ok {
		return v
	}
	return k
}

func (p *prepared) actions(as []policy.Action) string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = lookup(p.w.ActNames, string(a))
	}
	return strings.Join(out, ", ")
}

// grants are the live (not revoked, not ended by in.Now) grants that match
// at least one camera the document covers, by ID.
func (p *prepared) grants() []*policy.Grant {
	var out []*policy.Grant
	for _, id := range sortedKeys(p.s.Grants) {
		g := p.s.Grants[id]
		if g.Revoked || (!g.Window.Until.IsZero() && !p.in.Now.Before(g.Window.Until)) {
			continue
		}
		if slices.ContainsFunc(p.cams, func(c *policy.Camera) bool { return policy.SelectorMatches(g.Selector, c) }) {
			out = append(out, g)
		}
	}
	return out
}

func (p *prepared) grantsTable(gs []*policy.Grant) Block {
	w := p.w
	b := Block{Kind: Table, Head: []string{w.ColSubject, w.ColActions, w.ColCameras, w.ColWindow, w.ColGrantPurpose}}
	for _, g := range gs {
		b.Rows = append(b.Rows, []string{g.Subject.String(), p.actions(g.Actions), g.Selector, p.window(g.Window), p.or(g.Purpose)})
	}
	return b
}

// usersTable lists the users who are not revoked, with what their role
// lets them do.
func (p *prepared) usersTable() Block {
	w := p.w
	b := Block{Kind: Table, Head: []string{w.ColUser, w.ColRole, w.ColMayDo}}
	for _, name := range sortedKeys(p.s.Users) {
		u := p.s.Users[name]
		if u.Revoked {
			continue
		}
		b.Rows = append(b.Rows, []string{name, lookup(w.RoleNames, string(u.Role)), lookup(w.RoleDoes, string(u.Role))})
	}
	return b
}

// liveNodes are the nodes that are not revoked and whose window has not
// ended by in.Now, by name; site filters to the nodes of one site (plus
// every node without a site) when not empty.
func (p *prepared) liveNodes(site string) []*policy.Node {
	var out []*policy.Node
	for _, name := range sortedKeys(p.s.Nodes) {
		n := p.s.Nodes[name]
		if n.Revoked || (!n.Window.Until.IsZero() && !p.in.Now.Before(n.Window.Until)) {
			continue
		}
		if site != "" && n.Site != "" && n.Site != site {
			continue
		}
		out = append(out, n)
	}
	return out
}

func (p *prepared) nodesTable(ns []*policy.Node) Block {
	w := p.w
	b := Block{Kind: Table, Head: []string{w.ColNode, w.ColRole, w.ColSite, w.ColJurisdiction, w.ColWindow, w.ColReplicas}}
	for _, n := range ns {
		site := n.Site
		if site == "" {
			site = "–"
		}
		holds := w.No
		if policy.ReplicaTarget(p.s, n.Name, p.in.Now) == nil {
			holds = w.Yes
		}
		b.Rows = append(b.Rows, []string{n.Name, lookup(w.NodeRoles, string(n.Role)) + ": " + lookup(w.NodeDoes, string(n.Role)), site, n.Jurisdiction, p.window(n.Window), holds})
	}
	return b
}

// replicaJurisdictions are the jurisdictions of the datacenters that may
// hold replicas at in.Now, sorted, without repeats.
func (p *prepared) replicaJurisdictions() []string {
	var js []string
	for _, n := range p.liveNodes("") {
		if policy.ReplicaTarget(p.s, n.Name, p.in.Now) == nil && !slices.Contains(js, n.Jurisdiction) {
			js = append(js, n.Jurisdiction)
		}
	}
	slices.Sort(js)
	return js
}

func (p *prepared) allowedJurisdictions() []string {
	a := p.s.DataJurisdictions
	if len(a) == 0 {
		a = policy.DefaultDataJurisdictions
	}
	a = slices.Clone(a)
	slices.Sort(a)
	return a
}

// transferBlocks say whether data leaves the EU/EEA: a fact when the
// policy keeps it inside, else what the policy allows and a field for the
// operator's safeguards (art. 46), which no policy records.
func (p *prepared) transferBlocks() []Block {
	allowed := p.allowedJurisdictions()
	outside := slices.ContainsFunc(allowed, func(j string) bool { return !InEEA(j) })
	if !outside {
		return []Block{{Kind: Para, Text: fmt.Sprintf(p.w.TransfersNone, strings.Join(allowed, ", "))}}
	}
	return []Block{
		{Kind: Para, Text: fmt.Sprintf(p.w.TransfersOutside, strings.Join(allowed, ", "))},
		{Kind: Fill, Text: p.w.TransfersSafeguards},
	}
}

// measuresBlocks are what Custos enforces, then the operator's measures
// (or a field for them).
func (p *prepared) measuresBlocks() []Block {
	w := p.w
	items := slices.Clone(w.CustosMeasures)
	items = slices.Insert(items, 4, fmt.Sprintf(w.MeasureQuorum, p.s.ApprovalThreshold()))
	out := []Block{
		{Kind: Para, Text: w.MeasuresCustos + ":"},
		{Kind: List, Items: items},
	}
	if len(p.in.Measures) == 0 {
		return append(out, Block{Kind: Fill, Text: w.RoPAOwnMeasuresFill})
	}
	return append(out,
		Block{Kind: Para, Text: w.RoPAOwnMeasures + ":"},
		Block{Kind: List, Items: slices.Clone(p.in.Measures)})
}
