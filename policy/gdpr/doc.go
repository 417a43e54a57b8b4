// Package gdpr owns the controller's GDPR documents that Custos generates
// from the committed policy: the records of processing activities (RoPA,
// art. 30(1)), the data protection impact assessment of a site (DPIA,
// art. 35(7)), the full notice of a site (art. 13) and the printable
// first-layer sign with a QR code to that notice; and Check, which says
// what in the paperwork is missing or stale.
//
// Every document is built as one model (Doc: sections of paragraphs,
// field lists, tables, lists and fields the operator must fill in) from an
// Input, then rendered as HTML (html/template, so every text from the
// policy is escaped) or as PDF (go-pdf/fpdf with the Go fonts embedded,
// which cover Czech). A document is in Czech or English and names the
// policy index it was made from and when; the same Input gives the same
// bytes. What a machine cannot know — where a camera looks, the operator's
// weighing of risks, outside recipients — is never invented: it is an
// explicit field marked for the operator ("DOPLNÍ PROVOZOVATEL" / "TO BE
// COMPLETED BY THE OPERATOR").
//
// The package reads the policy and the caller's Input only: no clock, no
// I/O beyond the writer it is given.
package gdpr
