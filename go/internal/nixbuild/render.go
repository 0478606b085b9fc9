package nixbuild

import (
	"bytes"
	_ "embed"
	"text/template"
)

//go:embed sandbox-flake.nix.tmpl
var flakeTemplate string

var tmpl = template.Must(template.New("flake.nix").Option("missingkey=error").Parse(flakeTemplate))

// Render returns the contents of state/flake.nix for p.
func Render(p Params) ([]byte, error) {
	p, err := p.normalize()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, p); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
