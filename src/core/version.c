#include "rgemma.h"

/* Compiled into the library: the header a program was built with may differ. */
const char *rg_version(void) { return RG_VERSION; }
