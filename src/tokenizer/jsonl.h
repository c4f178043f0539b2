/* The JSON Lines reader and JSON string writer (src/tokenizer/jsonl.c) are
 * public: include/rgemma.h, "tokenizer". */
#ifndef RG_JSONL_H
#define RG_JSONL_H

#include "rgemma.h"

#endif
