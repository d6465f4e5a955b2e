"""How well a keypoint's name matches a body's or site's name (``mimic bodies suggest``).

Labs name the same point many ways: ``HandL``, ``LeftHand``, ``l_hand``,
``HAND_R``, ``hand_lft``, ``forepaw_left``; models name the bone it rides on
``hand_L``, ``manus_left`` or ``paw_L``. A name is cut into lower-case words
(at separators, case changes and digits); side words (L/R, left/right,
lft/rgt, lt/rt) become a side; the remaining words are looked up in a table of
anatomical concepts, each with its usual words (``primary``) and the words of
neighbouring parts (``related``: an elbow keypoint sits at the end of the
upper arm and the start of the forearm). The score of a pair is the share of
the keypoint's words the target also has (1: ``HandL`` on ``hand_L``) or,
when higher, the best concept both share, a notch lower (``SYNONYM``: ``Hand``
on ``palm_L`` is likely, on ``hand_L`` certain; times ``RELATED`` for a
neighbour's word: ``Elbow`` on ``upper_arm_L`` is one of two); then a side factor: opposite sides never match, a
left/right keypoint on a midline body (an ear on the skull) is plausible, a
midline keypoint on a sided body much less so.
"""

from __future__ import annotations

import re

#: Score of two usual words of one concept (an exact word scores 1) ...
SYNONYM = 0.85
#: ... times this when one of them is a neighbouring part's word.
RELATED = 0.6
#: Side factors: a sided keypoint on a midline body, a midline keypoint on a sided body.
SIDED_ON_MIDLINE = 0.7
MIDLINE_ON_SIDED = 0.5
#: Words-in-common score when the digits differ (``leg1`` against ``leg2``).
DIGITS_DIFFER = 0.85

_SIDES = {"l": "L", "left": "L", "lft": "L", "lt": "L", "r": "R", "right": "R", "rgt": "R", "rt": "R"}

# concept: (usual words, words of neighbouring parts). Multi-word names are matched joined
# ("upper_arm", "UpperArm" and "upperarm" all give "upperarm").
CONCEPTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "head": (("head", "skull", "cranium", "cranial", "crown"), ("ear", "eye", "snout", "nose", "jaw", "antenna")),
    # Not the jaw: the nose is on the skull.
    "snout": (("snout", "nose", "muzzle", "rostrum", "beak", "nostril", "nosetip"), ("head", "skull")),
    "ear": (("ear", "ears", "pinna"), ("head", "skull")),
    "eye": (("eye", "eyes", "orbit"), ("head", "skull")),
    "jaw": (("jaw", "mandible", "chin", "mouth", "lip"), ("head", "skull")),
    "neck": (("neck", "cervical", "atlas", "axis", "atlant"), ("spine", "vertebra", "head")),
    "spine": (
        ("spine", "spinal", "vertebra", "vertebrae", "vertebral", "back", "lumbar", "thoracic", "dorsal", "withers"),
        ("torso", "thorax", "trunk", "chest", "neck", "cervical", "pelvis", "abdomen"),
    ),
    # Not "body" or "root": MJCF names use them for anything ("wrist_body").
    "torso": (
        ("torso", "thorax", "trunk", "chest", "abdomen", "belly", "centre", "center", "com"),
        ("spine", "vertebra", "pelvis", "back"),
    ),
    "tail": (("tail", "caudal", "coccyx", "tailbase", "tailtip"), ("pelvis", "spine", "vertebra")),
    "shoulder": (("shoulder", "scapula", "scap", "clavicle"), ("upperarm", "humerus", "torso", "thorax")),
    "upperarm": (("upperarm", "humerus", "brachium"), ("shoulder", "elbow")),
    "elbow": (("elbow", "olecranon"), ("upperarm", "humerus", "forearm", "lowerarm", "radius", "ulna")),
    "forearm": (("forearm", "lowerarm", "radius", "ulna", "antebrachium"), ("elbow", "wrist")),
    "wrist": (("wrist", "carpus", "carpal"), ("forearm", "lowerarm", "radius", "ulna", "hand", "manus")),
    "hand": (
        ("hand", "manus", "paw", "forepaw", "frontpaw", "palm", "metacarpal", "metacarpus"),
        ("finger", "fingers", "digit", "digits", "wrist"),
    ),
    "finger": (("finger", "fingers", "digit", "digits", "fingertip", "claw", "nail"), ("hand", "manus", "paw")),
    "hip": (
        ("hip", "pelvis", "pelvic", "acetabulum", "ilium", "coxa"),
        ("upperleg", "femur", "thigh", "tail", "torso"),
    ),
    "upperleg": (("upperleg", "thigh", "femur", "femoral"), ("hip", "knee")),
    "knee": (("knee", "stifle", "patella"), ("upperleg", "thigh", "femur", "lowerleg", "shin", "shank", "tibia")),
    "lowerleg": (("lowerleg", "shin", "shank", "tibia", "fibula", "crus"), ("knee", "ankle")),
    "ankle": (
        ("ankle", "hock", "tarsus", "tarsal", "heel", "calcaneus"),
        ("lowerleg", "shin", "shank", "tibia", "foot", "pes"),
    ),
    "foot": (
        ("foot", "feet", "pes", "paw", "hindpaw", "rearpaw", "backpaw", "sole", "metatarsal", "metatarsus"),
        ("toe", "toes", "ankle", "heel"),
    ),
    "toe": (("toe", "toes", "toetip", "hallux"), ("foot", "pes", "paw")),
    "wing": (("wing", "wings"), ("thorax",)),
    "antenna": (("antenna", "antennae", "antennal"), ("head",)),
}


def _word_concepts() -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    for concept, (primary, related) in CONCEPTS.items():
        for w in related:
            table.setdefault(w, {})[concept] = max(table.get(w, {}).get(concept, 0.0), RELATED)
        for w in primary:
            table.setdefault(w, {})[concept] = 1.0
    return table


_WORD_CONCEPTS = _word_concepts()


def words(name: str) -> list[str]:
    """Lower-case words of a name, cut at separators, case changes and digits."""
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)  # handL -> hand L
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", s)  # LShoulder -> L Shoulder
    s = re.sub(r"([A-Za-z])([0-9])|([0-9])([A-Za-z])", lambda m: " ".join(g for g in m.groups() if g), s)
    return [w.lower() for w in re.split(r"[^A-Za-z0-9]+", s) if w]


class Name:
    """A name cut into its side and the words and concepts the rest of it carries."""

    def __init__(self, name: str):
        ws = words(name)
        sides = {_SIDES[w] for w in ws if w in _SIDES}
        # Both sides named (a "left-right" label) says nothing about which.
        self.side = sides.pop() if len(sides) == 1 else None
        content = [w for w in ws if w not in _SIDES]
        self.digits = tuple(w for w in content if w.isdigit())
        alpha = [w for w in content if not w.isdigit()]
        # Single letters other than sides (SpineF, vertebra_C1) are too ambiguous to match on.
        self.words = frozenset(w for w in alpha if len(w) > 1)
        joined = {a + b for a, b in zip(alpha, alpha[1:], strict=False)} | {"".join(alpha)}
        self.concepts: dict[str, float] = {}
        for w in self.words | joined:
            for concept, strength in _WORD_CONCEPTS.get(w, {}).items():
                self.concepts[concept] = max(self.concepts.get(concept, 0.0), strength)


def pair_score(kp: Name, target: Name) -> float:
    """How well a keypoint's name matches a target's, in [0, 1] (see the module docstring)."""
    if kp.side and target.side and kp.side != target.side:
        return 0.0
    shared_concepts = (s * target.concepts[c] for c, s in kp.concepts.items() if c in target.concepts)
    concept = SYNONYM * max(shared_concepts, default=0.0)
    shared = 0.0
    if kp.words:
        shared = len(kp.words & target.words) / len(kp.words)
        if kp.digits != target.digits:
            shared *= DIGITS_DIFFER
    score = max(concept, shared)
    if kp.side and not target.side:
        score *= SIDED_ON_MIDLINE
    elif target.side and not kp.side:
        score *= MIDLINE_ON_SIDED
    return score


def name_scores(keypoints, targets) -> list[list[float]]:
    """(K, N) scores of every keypoint name against every target name."""
    kps = [Name(k) for k in keypoints]
    ts = [Name(t) for t in targets]
    return [[pair_score(k, t) for t in ts] for k in kps]
