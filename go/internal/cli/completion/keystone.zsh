#compdef keystone
# zsh completion for keystone, written by `keystone completion zsh`.
# Load it in ~/.zshrc after compinit: source <(keystone completion zsh)
# (or save it as _keystone in a directory of $fpath).
# Sandbox names come from `keystone agent __names` (the registry, read only).
_keystone() {
    local -a verbs
    verbs=({{range .}} '{{zq .Name}}:{{zq .Summary}}'{{end}})
    local i=2
    [[ ${words[2]} == agent ]] && i=3
    if (( CURRENT == i )); then
        _describe -t commands 'keystone command' verbs
        (( i == 2 )) && compadd agent
        return
    fi
    local verb=${words[i]} prev=${words[CURRENT-1]} cur=${words[CURRENT]}
    case "$verb $prev" in
{{- range $v := .}}{{range .Flags}}{{if .Value}}
        '{{$v.Name}} --{{.Name}}')
            {{- if eq (join .Values " ") "dir"}} _files -/
            {{- else if .Values}} compadd -- {{join .Values " "}}
            {{- else}} :{{end}}; return ;;
{{- end}}{{end}}{{end}}
    esac
    if [[ $cur == -* ]]; then
        case $verb in
{{- range .}}
            {{.Name}}) compadd -- {{range .Flags}}--{{.Name}} {{end}}--help ;;
{{- end}}
        esac
        return
    fi
    # after `--` comes a command for the guest: nothing to offer
    (( ${words[(I)--]} > i && ${words[(I)--]} < CURRENT )) && return
    case $verb in
{{- range .}}
        {{.Name}})
            {{- if eq .Operand "names"}} compadd -- ${(f)"$(${words[1]} agent __names 2>/dev/null)"}
            {{- else if eq .Operand "dir"}} _files -/
            {{- else if eq .Operand "shell"}} compadd -- bash zsh fish
            {{- else if eq .Operand "verb"}} _describe -t commands 'keystone command' verbs
            {{- else}} :{{end}} ;;
{{- end}}
    esac
}
if [[ $funcstack[1] == _keystone ]]; then
    _keystone "$@"
else
    compdef _keystone keystone
fi
