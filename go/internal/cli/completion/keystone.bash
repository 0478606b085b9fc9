# bash completion for keystone, written by `keystone completion bash`.
# Load it in ~/.bashrc: source <(keystone completion bash)
# Sandbox names come from `keystone agent __names` (the registry, read only).
_keystone() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local i=1 verb j
    [[ ${COMP_WORDS[1]} == agent ]] && i=2
    if (( COMP_CWORD == i )); then
        COMPREPLY=( $(compgen -W "{{range .}}{{.Name}} {{end}}" -- "$cur") )
        (( i == 1 )) && COMPREPLY+=( $(compgen -W "agent" -- "$cur") )
        return
    fi
    verb=${COMP_WORDS[i]}
    case "$verb $prev" in
{{- range $v := .}}{{range .Flags}}{{if .Value}}
        "{{$v.Name}} --{{.Name}}")
            {{- if eq (join .Values " ") "dir"}} compopt -o filenames; COMPREPLY=( $(compgen -d -- "$cur") )
            {{- else if .Values}} COMPREPLY=( $(compgen -W "{{join .Values " "}}" -- "$cur") )
            {{- else}} COMPREPLY=(){{end}}; return ;;
{{- end}}{{end}}{{end}}
    esac
    if [[ $cur == -* ]]; then
        case $verb in
{{- range .}}
            {{.Name}}) COMPREPLY=( $(compgen -W "{{range .Flags}}--{{.Name}} {{end}}--help" -- "$cur") ) ;;
{{- end}}
        esac
        return
    fi
    # after `--` comes a command for the guest: nothing to offer
    for (( j = i + 1; j < COMP_CWORD; j++ )); do [[ ${COMP_WORDS[j]} == -- ]] && return; done
    case $verb in
{{- range .}}
        {{.Name}})
            {{- if eq .Operand "names"}} COMPREPLY=( $(compgen -W "$("${COMP_WORDS[0]}" agent __names 2>/dev/null)" -- "$cur") )
            {{- else if eq .Operand "dir"}} compopt -o filenames; COMPREPLY=( $(compgen -d -- "$cur") )
            {{- else if eq .Operand "shell"}} COMPREPLY=( $(compgen -W "bash zsh fish" -- "$cur") )
            {{- else if eq .Operand "verb"}} COMPREPLY=( $(compgen -W "{{range $}}{{.Name}} {{end}}" -- "$cur") )
            {{- else}} COMPREPLY=(){{end}} ;;
{{- end}}
    esac
}
complete -F _keystone keystone
