package gdpr

import (
	"fmt"
	"slices"
	"strings"

	qrcode "github.com/skip2/go-qrcode"

	"github.com/custos-cctv/custos/policy"
)

// RoPA is the controller's records of processing activities (art. 30(1))
// for every camera of the federation.
func RoPA(in Input) (*Doc, error) {
	p, err := prepare(in, false)
	if err != nil {
		return nil, fmt.Errorf("records of processing: %w", err)
	}
	w := p.w
	d := p.newDoc(KindRoPA, w.RoPATitle, fmt.Sprintf(w.RoPASub, p.s.Federation))
	recipients := []Block{
		{Kind: Para, Text: fmt.Sprintf(w.RoPAQuorum, p.s.ApprovalThreshold())},
		{Kind: Para, Text: w.RoPAUsers + ":"},
		p.usersTable(),
		{Kind: Para, Text: w.RoPAGrants + ":"},
	}
	if gs := p.grants(); len(gs) > 0 {
		recipients = append(recipients, p.grantsTable(gs))
	} else {
		recipients = append(recipients, Block{Kind: Para, Text: w.RoPANoGrants})
	}
	recipients = append(recipients,
		Block{Kind: Para, Text: w.RoPANodes + ":"},
		p.nodesTable(p.liveNodes("")),
		Block{Kind: Fill, Text: w.RoPAOtherRecipients},
	)
	d.Sections = []Section{
		{Heading: w.RoPAController, Blocks: []Block{p.controllerFields(), p.dpoBlock()}},
		{Heading: w.RoPAPurposes, Blocks: []Block{p.purposesTable()}},
		{Heading: w.RoPACategories, Blocks: []Block{
			{Kind: Fields, Rows: [][]string{{w.RoPASubjects, w.RoPASubjectsText}, {w.RoPADataCats, w.RoPADataText}}},
			{Kind: Fill, Text: w.RoPASubjectsFill},
		}},
		{Heading: w.RoPARecipients, Blocks: recipients},
		{Heading: w.RoPATransfers, Blocks: p.transferBlocks()},
		{Heading: w.RoPAErasure, Blocks: []Block{
			p.retentionTable(),
			{Kind: Para, Text: w.RoPAErasureHolds},
			{Kind: Para, Text: w.RoPAAudit},
		}},
		{Heading: w.RoPAMeasures, Blocks: p.measuresBlocks()},
	}
	return d, nil
}

// DPIA is the data protection impact assessment (art. 35(7)) of one site:
// what the policy knows, and a field for everything it cannot.
func DPIA(in Input) (*Doc, error) {
	p, err := prepare(in, true)
	if err != nil {
		return nil, fmt.Errorf("DPIA: %w", err)
	}
	w := p.w
	d := p.newDoc(KindDPIA, w.DPIATitle, fmt.Sprintf(w.DPIASub, p.site.Name, p.site.Jurisdiction))

	cams := Block{Kind: Table, Head: []string{w.ColCamera, w.ColPurpose, w.ColBasis, w.ColRetention, w.ColTags}}
	for _, c := range p.cams {
		cams.Rows = append(cams.Rows, []string{c.Key(), c.Purpose, c.LegalBasis, p.duration(c.Retention), strings.Join(c.Tags, ", ")})
	}
	desc := []Block{
		{Kind: Para, Text: w.DPIASystem},
		{Kind: Para, Text: w.DPIACameras + ":"},
		cams,
		{Kind: Para, Text: w.DPIALegitimate},
	}
	for _, c := range p.cams {
		desc = append(desc, Block{Kind: Fill, Text: fmt.Sprintf(w.DPIAPlacementFill, c.Key())})
	}
	desc = append(desc, Block{Kind: Para, Text: w.DPIAAccess + ":"})
	if gs := p.grants(); len(gs) > 0 {
		desc = append(desc, p.grantsTable(gs))
	} else {
		desc = append(desc, Block{Kind: Para, Text: w.DPIANoGrants})
	}
	desc = append(desc,
		Block{Kind: Para, Text: w.RoPAUsers + ":"},
		p.usersTable(),
		// The site's own store and installers, and every node without a site.
		Block{Kind: Para, Text: w.RoPANodes + ":"},
		p.nodesTable(p.liveNodes(p.site.Name)),
	)
	if js := p.replicaJurisdictions(); len(js) > 0 {
		desc = append(desc, Block{Kind: Para, Text: fmt.Sprintf(w.DPIAReplicasText, strings.Join(js, ", "))})
	}
	desc = append(desc, p.transferBlocks()...)
	desc = append(desc, Block{Kind: Fill, Text: w.DPIAOtherRecipientsFill})

	var need []Block
	for _, c := range p.cams {
		need = append(need,
			Block{Kind: Fields, Rows: [][]string{
				{w.ColCamera, c.Key()},
				{w.ColPurpose, c.Purpose},
				{w.ColBasis, c.LegalBasis},
				{w.ColRetention, p.duration(c.Retention) + " – " + p.retentionNote(c)},
			}},
			Block{Kind: Fill, Text: fmt.Sprintf(w.DPIAAlternativesFill, c.Key())},
		)
	}

	risks := Block{Kind: Table, Head: []string{w.ColRisk, w.ColMeasures}}
	for _, r := range w.Risks {
		risks.Rows = append(risks.Rows, []string{r[0], r[1]})
	}

	d.Sections = []Section{
		{Heading: w.RoPAController, Blocks: []Block{p.controllerFields(), p.dpoBlock()}},
		{Heading: w.DPIADescription, Blocks: desc},
		{Heading: w.DPIANecessity, Blocks: need},
		{Heading: w.DPIARisks, Blocks: []Block{
			{Kind: Para, Text: w.DPIARisksIntro},
			risks,
			{Kind: Fill, Text: w.DPIAResidualFill},
		}},
		{Heading: w.DPIAMeasures, Blocks: p.measuresBlocks()},
		{Heading: w.DPIAOpinion, Blocks: []Block{
			{Kind: Fill, Text: w.DPIAOpinionFill},
			{Kind: Fill, Text: w.DPIAViewsFill},
			{Kind: Fill, Text: w.DPIAConsultFill},
			{Kind: Fill, Text: w.DPIAConclusionFill},
		}},
	}
	return d, nil
}

// Notice is the full information of art. 13(1)(a)–(f) and 13(2)(a)–(d)
// for the people one site's cameras record.
func Notice(in Input) (*Doc, error) {
	p, err := prepare(in, true)
	if err != nil {
		return nil, fmt.Errorf("notice: %w", err)
	}
	w := p.w
	d := p.newDoc(KindNotice, w.NoticeTitle, fmt.Sprintf(w.NoticeSub, p.site.Name))

	// Recipients by category: a public notice names no staff.
	var live, recorded []string
	for _, g := range p.grants() {
		s := g.Subject.String()
		if slices.Contains(g.Actions, policy.ActLive) && !slices.Contains(live, s) {
			live = append(live, s)
		}
		if (slices.Contains(g.Actions, policy.ActPlayback) || slices.Contains(g.Actions, policy.ActExport)) && !slices.Contains(recorded, s) {
			recorded = append(recorded, s)
		}
	}
	var cats []string
	if len(live) > 0 {
		cats = append(cats, fmt.Sprintf(w.NoticeRecipientLive, len(live)))
	}
	if len(recorded) > 0 {
		cats = append(cats, fmt.Sprintf(w.NoticeRecipientRecorded, len(recorded)))
	}
	if slices.ContainsFunc(p.liveNodes(p.site.Name), func(n *policy.Node) bool { return n.Role == policy.RoleInstaller }) {
		cats = append(cats, w.NoticeRecipientInstallers)
	}
	if js := p.replicaJurisdictions(); len(js) > 0 {
		cats = append(cats, fmt.Sprintf(w.NoticeRecipientDC, strings.Join(js, ", ")))
	}
	recipients := []Block{{Kind: Para, Text: fmt.Sprintf(w.NoticeRecipientsText, p.s.ApprovalThreshold())}}
	if len(cats) > 0 {
		recipients = append(recipients, Block{Kind: List, Items: cats})
	}
	recipients = append(recipients, Block{Kind: Fill, Text: w.NoticeOtherFill})

	auth := authorityFor(p.site.Jurisdiction)
	d.Sections = []Section{
		{Blocks: []Block{{Kind: Para, Text: w.NoticeIntro}}},
		{Heading: w.NoticeController, Blocks: []Block{p.controllerFields()}},
		{Heading: w.NoticeDPO, Blocks: []Block{p.dpoBlock()}},
		{Heading: w.NoticePurposes, Blocks: []Block{p.purposesTable(), {Kind: Para, Text: w.NoticeLegitimate}}},
		{Heading: w.NoticeRecipients, Blocks: recipients},
		{Heading: w.NoticeTransfers, Blocks: p.transferBlocks()},
		{Heading: w.NoticeRetention, Blocks: []Block{p.retentionTable()}},
		{Heading: w.NoticeRights, Blocks: []Block{
			{Kind: Para, Text: w.NoticeRightsIntro},
			{Kind: List, Items: slices.Clone(w.Rights)},
			{Kind: Para, Text: w.NoticeConsent},
			{Kind: Para, Text: fmt.Sprintf(w.NoticeHowTo, p.contact())},
		}},
		{Heading: w.NoticeComplaint, Blocks: []Block{
			{Kind: Para, Text: fmt.Sprintf(w.NoticeComplaintText, auth.Name[p.in.Lang], auth.Address, auth.Web)},
		}},
	}
	return d, nil
}

// contact is where a data subject writes: the controller's email, and the
// DPO's when there is one.
func (p *prepared) contact() string {
	c := p.in.Controller
	var cs []string
	for _, v := range []string{c.Email, c.DPOEmail} {
		if v = strings.TrimSpace(v); v != "" && !slices.Contains(cs, v) {
			cs = append(cs, v)
		}
	}
	if len(cs) == 0 {
		if a := strings.TrimSpace(c.Address); a != "" {
			return c.Name + ", " + a
		}
		return c.Name
	}
	return strings.Join(cs, ", ")
}

// qrSize is the PNG's side in pixels: large enough to print sharp at the
// sign's 60 mm.
const qrSize = 512

// Sign is the A4 first-layer sign of one site: the bilingual headline,
// controller, purposes, retention, DPO contact, and a QR code of the full
// notice's URL (in.NoticeURL, https only).
func Sign(in Input) (*Doc, error) {
	p, err := prepare(in, true)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	if err := checkNoticeURL(in.NoticeURL); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	png, err := qrcode.Encode(in.NoticeURL, qrcode.Medium, qrSize)
	if err != nil {
		return nil, fmt.Errorf("sign: QR code of %q: %w", in.NoticeURL, err)
	}
	w, c := p.w, in.Controller
	d := p.newDoc(KindSign, w.SignTitle, p.site.Name)

	var purposes []string
	for _, cam := range p.cams {
		if !slices.Contains(purposes, cam.Purpose) {
			purposes = append(purposes, cam.Purpose)
		}
	}
	retention := p.duration(p.cams[0].Retention)
	if slices.ContainsFunc(p.cams, func(cam *policy.Camera) bool { return cam.Retention != p.cams[0].Retention }) {
		var per []string
		for _, cam := range p.cams {
			per = append(per, fmt.Sprintf(w.SignRetentionPerCamera, cam.Name, p.duration(cam.Retention)))
		}
		retention = strings.Join(per, "; ")
	}
	controller := c.Name
	for _, v := range []string{c.Address, c.Email, c.Phone} {
		if v = strings.TrimSpace(v); v != "" {
			controller += ", " + v
		}
	}
	rows := [][]string{
		{w.SignController, controller},
		{w.SignPurposes, strings.Join(purposes, "; ")},
		{w.SignRetention, retention},
	}
	if p.hasDPO() {
		var dpo []string
		for _, v := range []string{c.DPOName, c.DPOEmail, c.DPOPhone} {
			if v = strings.TrimSpace(v); v != "" {
				dpo = append(dpo, v)
			}
		}
		rows = append(rows, []string{w.SignDPO, strings.Join(dpo, ", ")})
	} else {
		rows = append(rows, []string{w.SignDPO, w.NoDPO})
	}
	auth := authorityFor(p.site.Jurisdiction)
	d.Sections = []Section{{Blocks: []Block{
		{Kind: Pictogram},
		{Kind: Headline, Level: 1, Text: w.SignMain},
		{Kind: Headline, Level: 2, Text: w.SignTwin},
		{Kind: Fields, Rows: rows},
		{Kind: Para, Text: fmt.Sprintf(w.SignRights, auth.Name[in.Lang])},
		{Kind: Para, Text: w.SignMore},
		{Kind: QR, Text: in.NoticeURL, Image: png},
	}}}
	return d, nil
}
