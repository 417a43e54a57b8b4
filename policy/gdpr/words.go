package gdpr

import "fmt"

// words are a document language's fixed texts. Every field is set in
// every language (TestWordsComplete).
type words struct {
	Fill      string // the marker of a field the operator completes
	NotGiven  string
	Stamp     string // %d index, %s time
	TimeFmt   string // time.Format layout
	Page      string // "page %d of %s" for the PDF footer; %s is the total alias
	Yes, No   string
	NoLimit   string
	From      string // %s
	Until     string // %s
	FromUntil string // %s %s

	// Controller and DPO.
	Controller, Address, Email, Phone string
	DPO, DPOEmail, DPOPhone           string
	NoDPO                             string

	// Roles, actions and node roles.
	RoleNames map[string]string
	RoleDoes  map[string]string
	ActNames  map[string]string
	NodeRoles map[string]string
	NodeDoes  map[string]string

	// Retention.
	Hours                   func(int) string
	Days                    func(int) string
	Minutes                 func(int) string
	WithinDefault           string
	AboveDefault            string // %s justification
	AboveDefaultUnjustified string

	// Column headings.
	ColCamera, ColPurpose, ColBasis, ColRetention, ColJustification string
	ColUser, ColRole, ColMayDo, ColSubject, ColActions, ColCameras  string
	ColWindow, ColGrantPurpose, ColNode, ColSite, ColJurisdiction   string
	ColReplicas, ColTags, ColRisk, ColMeasures                      string

	// Measures.
	MeasuresCustos string
	MeasureQuorum  string // %d approvals
	CustosMeasures []string

	// Records of processing (art. 30(1)).
	RoPATitle, RoPASub                string // RoPASub: %s federation
	RoPAController, RoPAPurposes      string
	RoPACategories, RoPASubjects      string
	RoPASubjectsText, RoPADataCats    string
	RoPADataText, RoPASubjectsFill    string
	RoPARecipients, RoPAQuorum        string // RoPAQuorum: %d threshold
	RoPAUsers, RoPAGrants, RoPANodes  string
	RoPANoGrants, RoPAOtherRecipients string
	RoPATransfers, RoPAErasure        string
	RoPAErasureHolds, RoPAAudit       string
	RoPAMeasures, RoPAOwnMeasures     string
	RoPAOwnMeasuresFill               string
	TransfersNone, TransfersOutside   string // %s allowed jurisdictions
	TransfersSafeguards               string

	// DPIA (art. 35(7)).
	DPIATitle, DPIASub                string // DPIASub: %s site, %s jurisdiction
	DPIADescription, DPIASystem       string
	DPIACameras, DPIAPlacementFill    string // DPIAPlacementFill: %s camera
	DPIAAccess                        string
	DPIANecessity                     string
	DPIAAlternativesFill              string // %s camera
	DPIARisks, DPIARisksIntro         string
	Risks                             [][2]string // risk, what Custos does about it
	DPIAResidualFill                  string
	DPIAMeasures                      string
	DPIAOpinion, DPIAOpinionFill      string
	DPIAViewsFill, DPIAConclusionFill string
	DPIAConsultFill                   string
	DPIANoGrants                      string
	DPIALegitimate                    string
	DPIAReplicasText                  string // %s jurisdictions
	DPIAOtherRecipientsFill           string

	// Notice (art. 13).
	NoticeTitle, NoticeSub                 string // NoticeSub: %s site
	NoticeIntro                            string
	NoticeController, NoticeDPO            string
	NoticePurposes, NoticeLegitimate       string
	NoticeRecipients, NoticeRecipientsText string // %d approvals
	NoticeRecipientLive                    string // %d subjects
	NoticeRecipientRecorded                string // %d subjects
	NoticeRecipientInstallers              string
	NoticeRecipientDC                      string // %s jurisdictions
	NoticeOtherFill                        string
	NoticeTransfers                        string
	NoticeRetention                        string
	NoticeRights, NoticeRightsIntro        string
	Rights                                 []string
	NoticeConsent                          string
	NoticeComplaint, NoticeComplaintText   string // NoticeComplaintText: %s name, %s address, %s web
	NoticeHowTo                            string // %s contact

	// Sign.
	SignMain, SignTwin     string
	SignController         string
	SignPurposes           string
	SignRetention          string
	SignDPO                string
	SignRights             string // %s authority
	SignMore               string
	SignTitle              string
	SignRetentionPerCamera string // %s camera, %s retention
}

func wordsFor(lang string) (*words, error) {
	switch lang {
	case "cs":
		return &cs, nil
	case "en":
		return &en, nil
	}
	return nil, fmt.Errorf("language %q: want cs or en", lang)
}

// czechPlural picks the form for n: 1, 2–4, or 0 and 5+.
func czechPlural(n int, one, few, many string) string {
	switch {
	case n == 1:
		return one
	case n >= 2 && n <= 4:
		return few
	}
	return many
}

func englishPlural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
