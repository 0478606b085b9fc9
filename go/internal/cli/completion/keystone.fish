# fish completion for keystone, written by `keystone completion fish`.
# Install: keystone completion fish > ~/.config/fish/completions/keystone.fish
# Sandbox names come from `keystone agent __names` (the registry, read only).
function __keystone_words
    set -l words (commandline -opc)
    set -e words[1]
    test "$words[1]" = agent; and set -e words[1]
    for w in $words
        echo $w
    end
end
function __keystone_needs_verb
    test (count (__keystone_words)) -eq 0
end
# true when the verb is $argv[1] and no `--` came yet (after it comes a
# command for the guest; `commandline -o` drops the `--` itself)
function __keystone_verb_is
    set -l words (__keystone_words)
    test "$words[1]" = $argv[1]; and not string match -qr -- '\s--\s' (commandline -pc)
end
function __keystone_names
    set -l self (commandline -opc)[1]
    command $self agent __names 2>/dev/null
end
complete -c keystone -f
complete -c keystone -n 'test (count (commandline -opc)) -eq 1' -a agent -d 'the agent commands (optional)'
complete -c keystone -n 'not __keystone_needs_verb' -l help -d 'show the command\'s usage and options'
{{- range $v := .}}
complete -c keystone -n __keystone_needs_verb -a {{.Name}} -d '{{fq .Summary}}'
{{- range .Flags}}
complete -c keystone -n '__keystone_verb_is {{$v.Name}}' -l {{.Name}}
{{- if eq (join .Values " ") "dir"}} -x -a '(__fish_complete_directories)'
{{- else if .Values}} -x -a '{{join .Values " "}}'
{{- else if .Value}} -x{{end}} -d '{{fq .Usage}}'
{{- end}}
{{- if eq .Operand "names"}}
complete -c keystone -n '__keystone_verb_is {{.Name}}' -a '(__keystone_names)'
{{- else if eq .Operand "dir"}}
complete -c keystone -n '__keystone_verb_is {{.Name}}' -a '(__fish_complete_directories)'
{{- else if eq .Operand "shell"}}
complete -c keystone -n '__keystone_verb_is {{.Name}}' -a 'bash zsh fish'
{{- else if eq .Operand "verb"}}
complete -c keystone -n '__keystone_verb_is {{.Name}}' -a '{{range $}}{{.Name}} {{end}}'
{{- end}}
{{- end}}
