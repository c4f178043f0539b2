#!/usr/bin/env python3
"""Prints the name of every function declared in a C header (default
include/rgemma.h), one a line, sorted: the declarations at file scope, after
comments, preprocessor lines and struct bodies are taken out. Function
pointer typedefs and struct members are not functions of the library."""
import re
import sys


def functions(text):
    text = re.sub(r'\\\n', ' ', text)  # continued preprocessor lines
    text = re.sub(r'/\*.*?\*/', ' ', text, flags=re.S)
    text = re.sub(r'//[^\n]*', '', text)
    text = re.sub(r'^[ \t]*#[^\n]*', '', text, flags=re.M)
    text = re.sub(r'extern\s+"C"\s*\{', '', text)  # its closing brace is under #ifdef
    names, depth, stmt = set(), 0, ''
    for ch in text:
        if ch == '{':
            depth += 1
        elif ch == '}':
            depth -= 1
        elif depth == 0:
            stmt += ch
            if ch == ';':
                st = ' '.join(stmt.split())
                m = re.match(r'(?!typedef\b)[^(]*?\b([A-Za-z_]\w*)\s*\(', st)
                if m:
                    names.add(m.group(1))
                stmt = ''
        if depth < 0:  # the extern "C" block's closing brace
            depth = 0
    return sorted(names)


if __name__ == '__main__':
    path = sys.argv[1] if len(sys.argv) > 1 else 'include/rgemma.h'
    with open(path, encoding='utf-8') as f:
        print('\n'.join(functions(f.read())))
