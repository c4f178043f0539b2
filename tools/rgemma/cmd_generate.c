#include <stdio.h>
#include "rgemma.h"
int cmd_generate(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "todo\n"); return 1; }
