#!/usr/bin/env python3
"""Convert public benchmark files to rgemma's eval JSONL schema (README "Evaluation").

usage: eval-convert.py DATASET INPUT [INPUT ...] [-o OUT.jsonl]

DATASET is one of: mmlu, hellaswag, piqa, siqa, boolq, winogrande, commonsenseqa,
openbookqa, arc, triviaqa, nq, gsm8k. INPUT files may be JSON Lines (the layout of
the Hugging Face datasets exported with `to_json`, and of most original releases),
JSON (a list, or an object holding the list under "Data"/"data", as TriviaQA's
original files), or CSV for MMLU's original release (question,A,B,C,D,answer;
the subject comes from the file name, e.g. abstract_algebra_test.csv).

The prompts follow lm-evaluation-harness's default templates for each task, so
choices carry their leading space and few-shot examples render as
prompt + answer. Convert the split you take shots from (MMLU dev, GSM8K train,
...) the same way and pass it to `rgemma eval --shots`.
Python 3 standard library only.
"""
import argparse
import csv
import json
import os
import re
import sys

LETTERS = "ABCDEFGHIJ"


def read_records(path):
    """Yields (record, where) from a .jsonl, .json or .csv file."""
    if path.endswith(".csv"):
        base = os.path.basename(path)[:-4]
        subject = re.sub(r"_(test|dev|val|validation|train)$", "", base)
        with open(path, newline="", encoding="utf-8") as f:
            for i, row in enumerate(csv.reader(f), 1):
                if len(row) != 6:
                    raise ValueError(f"{path}:{i}: expected 6 columns (question,A,B,C,D,answer), got {len(row)}")
                yield {"question": row[0], "choices": row[1:5], "answer": row[5], "subject": subject}, f"{path}:{i}"
        return
    with open(path, encoding="utf-8") as f:
        if path.endswith(".json"):
            data = json.load(f)
            if isinstance(data, dict):
                data = data.get("Data", data.get("data"))
            if not isinstance(data, list):
                raise ValueError(f"{path}: expected a JSON list (or an object with a \"Data\" list)")
            for i, rec in enumerate(data):
                yield rec, f"{path}[{i}]"
            return
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line), f"{path}:{i}"
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{i}: invalid JSON: {e}") from None


def letter_index(key, labels):
    """Index of an answer key ("C", "3", 2) among the choice labels."""
    key = str(key).strip()
    if key in labels:
        return labels.index(key)
    if key.isdigit() and labels and labels[0] in LETTERS:  # ARC's "1".."4" with letter labels elsewhere
        return int(key) - 1
    if key in LETTERS:
        return LETTERS.index(key)
    raise ValueError(f"answer key {key!r} is not one of {labels}")


def choice_list(rec):
    """(labels, texts) from {"choices": {"label": [...], "text": [...]}} or the
    original ARC/OpenBookQA {"question": {"choices": [{"label", "text"}]}}."""
    ch = rec.get("choices")
    if isinstance(ch, dict):
        return [str(x) for x in ch["label"]], list(ch["text"])
    q = rec.get("question")
    if isinstance(q, dict) and "choices" in q:
        return [str(c["label"]) for c in q["choices"]], [c["text"] for c in q["choices"]]
    raise ValueError("no choices found")


def question_text(rec, key="question"):
    q = rec.get(key)
    if isinstance(q, dict):
        return q["stem"]
    return q


def mmlu(rec):
    subject = rec.get("subject", "")
    choices = rec["choices"]
    answer = rec["answer"]
    label = answer if isinstance(answer, int) else letter_index(answer, list(LETTERS[: len(choices)]))
    lines = [rec["question"].strip()] + [f"{LETTERS[i]}. {c}" for i, c in enumerate(choices)]
    pretty = subject.replace("_", " ")
    return {
        "group": subject,
        "description": f"The following are multiple choice questions (with answers) about {pretty}.\n\n",
        "context": "\n".join(lines) + "\nAnswer:",
        "choices": [" " + LETTERS[i] for i in range(len(choices))],
        "label": label,
    }


def hellaswag_pre(text):
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def hellaswag(rec):
    ctx = rec["ctx_a"] + " " + rec["ctx_b"].capitalize()
    return {
        "group": rec.get("activity_label"),
        "context": hellaswag_pre(rec["activity_label"] + ": " + ctx),
        "choices": [" " + hellaswag_pre(e) for e in rec["endings"]],
        "label": int(rec["label"]),
    }


def piqa(rec):
    return {
        "context": f"Question: {rec['goal']}\nAnswer:",
        "choices": [" " + rec["sol1"], " " + rec["sol2"]],
        "label": int(rec["label"]),
    }


def siqa(rec):
    return {
        "context": f"Q: {rec['context']} {rec['question']}\nA:",
        "choices": [" " + rec["answerA"], " " + rec["answerB"], " " + rec["answerC"]],
        "label": int(rec["label"]) - 1,
    }


def boolq(rec):
    answer = rec["answer"] if "answer" in rec else rec["label"]
    return {
        "context": f"{rec['passage']}\nQuestion: {rec['question']}?\nAnswer:",
        "choices": [" no", " yes"],
        "label": 1 if answer in (True, 1, "true", "True") else 0,
    }


def winogrande(rec):
    s = rec["sentence"]
    i = s.index("_")
    return {
        "contexts": [s[:i] + rec["option1"], s[:i] + rec["option2"]],
        "continuation": " " + s[i + 1 :].strip(),
        "label": int(rec["answer"]) - 1,
    }


def commonsenseqa(rec):
    labels, texts = choice_list(rec)
    lines = [question_text(rec).strip()] + [f"{l}. {t}" for l, t in zip(labels, texts)]
    return {
        "context": "Question: " + "\n".join(lines) + "\nAnswer:",
        "choices": [" " + l for l in labels],
        "label": letter_index(rec["answerKey"], labels),
    }


def openbookqa(rec):
    labels, texts = choice_list(rec)
    stem = rec.get("question_stem") or question_text(rec)
    return {"context": stem, "choices": [" " + t for t in texts], "label": letter_index(rec["answerKey"], labels)}


def arc(rec):
    labels, texts = choice_list(rec)
    return {
        "context": f"Question: {question_text(rec)}\nAnswer:",
        "choices": [" " + t for t in texts],
        "label": letter_index(rec["answerKey"], labels),
    }


QA_STOP = ["\n", ".", ","]


def triviaqa(rec):
    q = rec.get("question", rec.get("Question"))
    a = rec.get("answer", rec.get("Answer"))
    aliases = a.get("aliases", a.get("Aliases", []))
    value = a.get("value", a.get("Value"))
    answers = list(dict.fromkeys([value] + list(aliases)))
    return {"prompt": f"Question: {q}?\nAnswer:", "answers": answers, "target": " " + value, "stop": QA_STOP}


def nq(rec):
    answers = rec["answer"] if isinstance(rec["answer"], list) else [rec["answer"]]
    return {"prompt": f"Q: {rec['question']}?\nA:", "answers": answers, "target": " " + answers[0], "stop": QA_STOP}


def gsm8k(rec):
    solution = rec["answer"]
    final = solution.split("####")[-1].strip().replace(",", "")
    return {
        "prompt": f"Question: {rec['question']}\nAnswer:",
        "answers": [final],
        "target": " " + solution,
        "stop": ["Question:", "\n\n"],
    }


CONVERTERS = {
    "mmlu": mmlu, "hellaswag": hellaswag, "piqa": piqa, "siqa": siqa, "boolq": boolq,
    "winogrande": winogrande, "commonsenseqa": commonsenseqa, "openbookqa": openbookqa,
    "arc": arc, "triviaqa": triviaqa, "nq": nq, "gsm8k": gsm8k,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", choices=sorted(CONVERTERS))
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("-o", "--output", help="output JSONL (default: stdout)")
    args = ap.parse_args()
    convert = CONVERTERS[args.dataset]
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    n = skipped = 0
    try:
        for path in args.inputs:
            for rec, where in read_records(path):
                try:
                    item = convert(rec)
                except (KeyError, ValueError, TypeError, IndexError) as e:
                    # unlabelled test splits (e.g. WinoGrande's) have no answer to score against
                    if str(rec.get("answer", rec.get("label", "x"))) in ("", "-1"):
                        skipped += 1
                        continue
                    raise ValueError(f"{where}: cannot convert: {type(e).__name__}: {e}") from None
                item = {k: v for k, v in item.items() if v is not None}
                rid = rec.get("id", rec.get("ID", rec.get("QuestionId")))
                if rid is not None:
                    item = {"id": str(rid), **item}
                out.write(json.dumps(item, ensure_ascii=False) + "\n")
                n += 1
    except (OSError, ValueError) as e:
        print(f"eval-convert: {e}", file=sys.stderr)
        return 1
    finally:
        if args.output:
            out.close()
    print(f"eval-convert: {args.dataset}: {n} items" + (f", {skipped} unlabelled skipped" if skipped else ""),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
