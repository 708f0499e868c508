"""``tributary completion bash``: a completion script for the shell, made from the parser
itself, so it always offers the commands, actions and options this version has.

Install it with ``tributary completion bash > ~/.local/share/bash-completion/completions/tributary``
(or ``eval "$(tributary completion bash)"`` in ``~/.bashrc``); zsh reads it through
``bashcompinit``.
"""

from __future__ import annotations

import argparse


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(o for action in parser._actions for o in action.option_strings)


def bash_script(parser: argparse.ArgumentParser) -> str:
    """A bash function completing ``tributary COMMAND [ACTION] --option``."""
    commands = _subcommands(parser)
    cases = []
    for name, command in sorted(commands.items()):
        actions = _subcommands(command)
        inner = [
            f'            {action}) words="{" ".join(_options(sub))}" ;;'
            for action, sub in sorted(actions.items())
        ]
        if actions:
            names = " ".join(sorted(actions))
            cases.append(
                f"        {name})\n"
                f'            if [ "$COMP_CWORD" -eq 2 ]; then words="{names}"\n'
                f'            else case "${{COMP_WORDS[2]}}" in\n'
                + "\n".join(inner)
                + "\n            esac; fi ;;"
            )
        else:
            cases.append(f'        {name}) words="{" ".join(_options(command))}" ;;')
    top = " ".join([*sorted(commands), *_options(parser)])
    return (
        "# bash completion for tributary (made by: tributary completion bash)\n"
        "_tributary() {\n"
        '    local cur="${COMP_WORDS[COMP_CWORD]}" words=""\n'
        '    if [ "$COMP_CWORD" -eq 1 ]; then words="' + top + '"\n'
        '    else case "${COMP_WORDS[1]}" in\n' + "\n".join(cases) + "\n    esac; fi\n"
        '    COMPREPLY=($(compgen -W "$words" -- "$cur"))\n'
        "}\n"
        "complete -o default -F _tributary tributary\n"
    )


def cmd_completion(args: argparse.Namespace) -> int:
    from service.cli import build_parser

    print(bash_script(build_parser()), end="")
    return 0
