"""`authproxy completion bash|zsh|fish`: completion scripts generated from the argparse parser.

Generated, not hand-written, so a new command or option completes the day it is added. Route
names complete from the config (`-c FILE` when given on the line) through the hidden
`authproxy completion --routes -c FILE`, which reads only the YAML (no validation, no network).
"""

from __future__ import annotations

import argparse
import sys

from authproxy.shell import PROG

ROUTE_ARGS = {"token", "login", "logout"}  # commands whose positional argument is a route name


def cmd_completion(args: argparse.Namespace) -> int:
    from authproxy.cli.main import _parser

    if args.routes:
        print(" ".join(route_names(args.config)))
        return 0
    if args.shell is None:
        print("authproxy completion: name the shell: bash, zsh or fish", file=sys.stderr)
        return 2
    spec = command_spec(_parser())
    print({"bash": bash, "zsh": zsh, "fish": fish}[args.shell](spec))
    return 0


def command_spec(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Each subcommand with its options (long and short), in the parser's order."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    spec: dict[str, list[str]] = {}
    for name, cmd in sub.choices.items():
        options: list[str] = []
        for action in cmd._actions:
            if action.help != argparse.SUPPRESS:
                options += action.option_strings
        spec[name] = options
    return spec


def route_names(path: str) -> list[str]:
    """The route names in the config file, or none when it cannot be read (completion stays quiet)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as file:
            raw = yaml.safe_load(file)
    except (OSError, ValueError, yaml.YAMLError):
        return []
    routes = raw.get("routes") if isinstance(raw, dict) else None
    return [str(name) for name in routes] if isinstance(routes, dict) else []


ROUTES = f'{PROG} completion --routes -c "$cfg" 2>/dev/null'


def bash(spec: dict[str, list[str]]) -> str:
    cases = "\n".join(f'        {name}) opts="{" ".join(opts)}" ;;' for name, opts in spec.items())
    routes = " | ".join(sorted(ROUTE_ARGS))
    return f"""# bash completion for {PROG}; load with: source <({PROG} completion bash)
_{PROG}() {{
    local cur prev cmd cfg=config.yaml opts i
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    cmd="${{COMP_WORDS[1]}}"
    for ((i=1; i<COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in -c|--config) cfg="${{COMP_WORDS[i+1]}}" ;; esac
    done
    if [[ $COMP_CWORD -eq 1 ]]; then
        COMPREPLY=($(compgen -W "{" ".join(spec)} --help --version" -- "$cur"))
        return
    fi
    case "$prev" in
        -c|--config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    esac
    case "$cmd" in
{cases}
    esac
    case "$cmd" in
        completion) opts="$opts bash zsh fish" ;;
        {routes}) [[ "$cur" != -* ]] && opts="$opts $({ROUTES})" ;;
    esac
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}}
complete -F _{PROG} {PROG}
"""


def zsh(spec: dict[str, list[str]]) -> str:
    cases = "\n".join(f"        {name}) opts=({' '.join(opts)}) ;;" for name, opts in spec.items())
    routes = "|".join(sorted(ROUTE_ARGS))
    return f"""#compdef {PROG}
# zsh completion for {PROG}; put it on $fpath as _{PROG}, or: source <({PROG} completion zsh)
_{PROG}() {{
    local -a opts commands
    local cfg=config.yaml i
    commands=({" ".join(spec)})
    if (( CURRENT == 2 )); then
        compadd -- $commands --help --version
        return
    fi
    for ((i=2; i<CURRENT; i++)); do
        [[ ${{words[i]}} == (-c|--config) ]] && cfg=${{words[i+1]}}
    done
    if [[ ${{words[CURRENT-1]}} == (-c|--config) ]]; then
        _files
        return
    fi
    case ${{words[2]}} in
{cases}
    esac
    case ${{words[2]}} in
        completion) opts+=(bash zsh fish) ;;
        {routes}) [[ ${{words[CURRENT]}} != -* ]] && opts+=($({ROUTES})) ;;
    esac
    compadd -- $opts
}}
compdef _{PROG} {PROG}
"""


def fish(spec: dict[str, list[str]]) -> str:
    lines = [f"# fish completion for {PROG}; save as ~/.config/fish/completions/{PROG}.fish"]
    lines.append(f"complete -c {PROG} -f")
    lines.append(f"complete -c {PROG} -n __fish_use_subcommand -a '{' '.join(spec)}'")
    lines.append(f"complete -c {PROG} -n __fish_use_subcommand -l version -d 'print the version'")
    for name, opts in spec.items():
        for opt in opts:
            flag = f"-l {opt[2:]}" if opt.startswith("--") else f"-s {opt[1:]}"
            files = " -r -F" if opt in ("-c", "--config") else ""
            lines.append(f"complete -c {PROG} -n '__fish_seen_subcommand_from {name}' {flag}{files}")
    lines.append(f"complete -c {PROG} -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'")
    routes = (
        "set -l cfg config.yaml; set -l t (commandline -opc); for i in (seq (count $t)); "
        "if contains -- $t[$i] -c --config; set cfg $t[(math $i + 1)]; end; end; "
        f'{PROG} completion --routes -c $cfg 2>/dev/null | string split " "'
    )
    lines.append(f"complete -c {PROG} -n '__fish_seen_subcommand_from {' '.join(sorted(ROUTE_ARGS))}' -a '({routes})'")
    return "\n".join(lines) + "\n"
