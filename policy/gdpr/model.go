package gdpr

import "time"

// Kind names a document.
type Kind string

const (
	KindRoPA   Kind = "ropa"
	KindDPIA   Kind = "dpia"
	KindNotice Kind = "notice"
	KindSign   Kind = "sign"
)

// Doc is a generated document, independent of how it is rendered.
type Doc struct {
	Kind  Kind
	Lang  string // "cs" or "en"
	Title string
	// Subtitle names what the document covers (the controller, a site).
	Subtitle  string
	Index     uint64    // the policy index it was made from
	Generated time.Time // when, as the caller said (Input.Now)
	// Stamp is the localized line naming Index and Generated; every
	// rendering shows it.
	Stamp    string
	Sections []Section
}

// Section is a heading and what follows it. A sign's sections have no
// heading.
type Section struct {
	Heading string
	Blocks  []Block
}

// BlockKind says how a Block is shown.
type BlockKind int

const (
	// Para is a paragraph of Text.
	Para BlockKind = iota
	// Fields are label–value pairs, Rows of two cells.
	Fields
	// Table has a Head and Rows, every row as wide as the head.
	Table
	// List is a bulleted list of Items.
	List
	// Fill is a field the operator must complete: Text says what, and the
	// rendering marks it with the document's "to be completed" marker.
	Fill
	// Headline is the sign's large text; Level 1 is the main line, 2 its
	// twin in the other language.
	Headline
	// QR is a QR code (Image, PNG) of Text, a URL shown with it.
	QR
	// Pictogram is the sign's picture of a CCTV camera.
	Pictogram
)

// Block is one piece of a section.
type Block struct {
	Kind  BlockKind
	Text  string
	Level int
	Head  []string
	Rows  [][]string
	Items []string
	Image []byte
}
