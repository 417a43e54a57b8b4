package gdpr

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io"
)

// HTML writes the document as one self-contained HTML page (styles and
// the QR image inline), printable on A4. Every text is escaped by
// html/template, so a controller name or purpose with markup in it shows
// as text.
func (d *Doc) HTML(w io.Writer) error {
	if err := d.check(); err != nil {
		return err
	}
	wd, _ := wordsFor(d.Lang) // d.check accepted the language
	var buf bytes.Buffer
	err := page.Execute(&buf, struct {
		*Doc
		Fill string
	}{d, wd.Fill})
	if err != nil {
		return fmt.Errorf("%s: HTML: %w", d.Kind, err)
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// check refuses a Doc that did not come whole from a generator (a caller
// may build or change one): renderers never emit half a document.
func (d *Doc) check() error {
	if d == nil {
		return errors.New("no document")
	}
	if _, err := wordsFor(d.Lang); err != nil {
		return fmt.Errorf("%s: %w", d.Kind, err)
	}
	if d.Index == 0 || d.Generated.IsZero() || d.Stamp == "" {
		return fmt.Errorf("%s: the document names no policy index or generation time", d.Kind)
	}
	for _, s := range d.Sections {
		for _, b := range s.Blocks {
			if b.Kind == Table {
				for _, r := range b.Rows {
					if len(r) != len(b.Head) {
						return fmt.Errorf("%s: a table row of %d cells under %d headings", d.Kind, len(r), len(b.Head))
					}
				}
			}
			if b.Kind == Fields {
				for _, r := range b.Rows {
					if len(r) != 2 {
						return fmt.Errorf("%s: a field of %d cells", d.Kind, len(r))
					}
				}
			}
			if b.Kind == QR && len(b.Image) == 0 {
				return fmt.Errorf("%s: a QR code without its image", d.Kind)
			}
		}
	}
	return nil
}

var page = template.Must(template.New("doc").Funcs(template.FuncMap{
	"png": func(b []byte) template.URL {
		// A data: URL of PNG bytes the package encoded itself.
		return template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(b))
	},
	"kind": func(k BlockKind) string {
		return map[BlockKind]string{Para: "para", Fields: "fields", Table: "table", List: "list", Fill: "fill", Headline: "headline", QR: "qr", Pictogram: "pictogram"}[k]
	},
}).Parse(`<!DOCTYPE html>
<html lang="{{.Lang}}">
<head>
<meta charset="utf-8">
<meta name="generator" content="Custos">
<meta name="custos-policy-index" content="{{.Index}}">
<title>{{.Title}} – {{.Subtitle}}</title>
<style>
@page { size: A4; margin: 15mm; }
body { font-family: "Go", "DejaVu Sans", Arial, sans-serif; font-size: 10.5pt; color: #000; max-width: 180mm; margin: 0 auto; }
h1 { font-size: 18pt; margin: 0 0 2mm; }
h2 { font-size: 12.5pt; margin: 6mm 0 2mm; border-bottom: 0.3mm solid #000; }
.subtitle { font-size: 12pt; margin: 0 0 2mm; }
.stamp { font-size: 8.5pt; color: #333; }
table { border-collapse: collapse; width: 100%; margin: 2mm 0; }
th, td { border: 0.2mm solid #555; padding: 1mm 1.5mm; text-align: left; vertical-align: top; }
th { background: #e6e6e6; }
table.fields th { width: 30%; background: none; }
.fill { border: 0.4mm dashed #000; padding: 2mm; margin: 2mm 0; min-height: 14mm; }
.fill .marker { font-weight: bold; }
body.sign { max-width: none; text-align: center; }
.sign .headline1 { font-size: 30pt; font-weight: bold; margin: 8mm 0 4mm; }
.sign .headline2 { font-size: 18pt; font-weight: bold; margin: 0 0 8mm; }
.sign table.fields { font-size: 13pt; }
.sign .qr img { width: 60mm; height: 60mm; image-rendering: pixelated; }
.qr .url { font-family: monospace; font-size: 11pt; word-break: break-all; }
</style>
</head>
<body class="{{.Kind}}">
{{- if ne .Kind "sign"}}
<h1>{{.Title}}</h1>
<p class="subtitle">{{.Subtitle}}</p>
<p class="stamp">{{.Stamp}}</p>
{{- end}}
{{- range .Sections}}
<section>
{{- if .Heading}}
<h2>{{.Heading}}</h2>
{{- end}}
{{- range .Blocks}}
{{- $k := kind .Kind}}
{{- if eq $k "para"}}
<p>{{.Text}}</p>
{{- else if eq $k "fields"}}
<table class="fields">
{{- range .Rows}}
<tr><th scope="row">{{index . 0}}</th><td>{{index . 1}}</td></tr>
{{- end}}
</table>
{{- else if eq $k "table"}}
<table>
<thead><tr>{{range .Head}}<th>{{.}}</th>{{end}}</tr></thead>
<tbody>
{{- range .Rows}}
<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{- end}}
</tbody>
</table>
{{- else if eq $k "list"}}
<ul>
{{- range .Items}}
<li>{{.}}</li>
{{- end}}
</ul>
{{- else if eq $k "fill"}}
<div class="fill"><span class="marker">{{$.Fill}}:</span> {{.Text}}</div>
{{- else if eq $k "headline"}}
<p class="headline{{.Level}}">{{.Text}}</p>
{{- else if eq $k "pictogram"}}
<svg class="camera" viewBox="0 0 60 36" width="60mm" height="36mm" role="img" aria-label="CCTV"><g fill="#000"><path d="M4 6 L40 6 L46 10 L46 22 L40 26 L4 26 Z"/><path d="M46 12 L56 8 L56 24 L46 20 Z"/><rect x="20" y="26" width="4" height="6"/><rect x="10" y="32" width="24" height="3"/></g><circle cx="12" cy="16" r="3" fill="#fff"/></svg>
{{- else if eq $k "qr"}}
<div class="qr"><img src="{{png .Image}}" alt="QR: {{.Text}}"><p class="url">{{.Text}}</p></div>
{{- end}}
{{- end}}
</section>
{{- end}}
{{- if eq .Kind "sign"}}
<p class="stamp">{{.Stamp}}</p>
{{- end}}
</body>
</html>
`))
