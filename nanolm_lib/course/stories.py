"""The project's own story generator: simple, seeded children's stories in the style of
TinyStories, used when neither a local copy nor the hub can be reached (and by tests that
need text of a known size). :func:`make_stories` is all there is to call; the tables below
are its vocabulary: heroes, places, things, and problems with the ways they are solved.
"""

from __future__ import annotations

import random

GENERATOR_VERSION = 1  # bump when make_stories changes: cached corpora are then rebuilt

_HEROES = [  # (name, what they are, pronoun)
    ("Lily", "little girl", "she"), ("Tom", "little boy", "he"), ("Mia", "little girl", "she"),
    ("Ben", "little boy", "he"), ("Sue", "girl", "she"), ("Max", "small dog", "he"),
    ("Bella", "fluffy bunny", "she"), ("Tim", "boy", "he"), ("Lucy", "kind girl", "she"),
    ("Sam", "happy boy", "he"), ("Daisy", "little duck", "she"), ("Leo", "young lion", "he"),
    ("Kitty", "small cat", "she"), ("Ollie", "brown bear", "he"), ("Rosie", "pink pig", "she"),
    ("Finn", "little fish", "he"), ("Zoe", "curious girl", "she"), ("Jack", "brave boy", "he"),
    ("Molly", "little mouse", "she"), ("Spot", "spotted puppy", "he"),
    ("Anna", "little girl", "she"), ("Billy", "little goat", "he"), ("Emma", "girl", "she"),
    ("Toby", "turtle", "he"), ("Lola", "ladybug", "she"), ("Sammy", "squirrel", "he"),
]
_PLACES = ["the park", "the garden", "the big forest", "the beach", "the farm",
           "the playground", "the pond", "the green hill", "the backyard", "the meadow",
           "the zoo", "the library", "the river", "the old barn", "the school yard"]
_THINGS = ["red ball", "blue kite", "toy car", "teddy bear", "shiny stone", "yellow balloon",
           "little boat", "new hat", "box of crayons", "wooden train", "pretty doll",
           "big book", "green bucket", "soft blanket", "toy drum", "paper crown"]
_HOBBIES = ["play with {his} {thing}", "run and jump", "sing happy songs",
            "look at the clouds", "dig in the dirt", "build tall towers", "draw pictures",
            "splash in puddles", "read picture books", "chase butterflies", "climb trees",
            "pick flowers", "count the stars", "play hide and seek"]
_WEATHER = ["The sun was warm and bright.", "The sky was blue and the birds were singing.",
            "It was a windy day and the leaves were dancing.", "It was a cool, quiet morning.",
            "The grass was wet and shiny after the rain.", "It was a hot summer day."]
_GLAD = ["happy", "glad", "proud", "excited", "thankful"]
_SAD = ["sad", "worried", "upset", "scared", "grumpy"]

# Each problem: the trouble, then ways it is solved, and a moral that sometimes ends the story.
_PROBLEMS = [
    {
        "trouble": [
            "{Name} threw {his} {thing} high in the air. Oh no! It got stuck in a tall tree. "
            "{Name} felt {sad}. \"I can't reach it,\" {he} said.",
            "The wind took {name}'s {thing} and carried it up into a tree. {Name} jumped and "
            "jumped, but the {thing} was too high.",
        ],
        "fix": [
            "{Friend} came by and saw the problem. \"I can help!\" said {friend}. {Fhe} found a "
            "long stick and gently pushed the {thing} down. {Name} hugged {friend}.",
            "{Name} asked {friend} for help. Together they shook the tree, and the {thing} fell "
            "down into the soft grass. \"Thank you!\" said {name}.",
            "A kind bird saw {name} and flew up to the branch. It pushed the {thing} with its "
            "beak until it fell. {Name} smiled and said, \"Thank you, bird!\"",
        ],
        "moral": "When we help each other, hard things become easy.",
    },
    {
        "trouble": [
            "One morning, {name} could not find {his} {thing}. {He} looked under the bed and "
            "behind the door, but it was not there. {Name} felt {sad}.",
            "At {place}, {name} put down {his} {thing} to play. When {he} came back, it was gone!",
        ],
        "fix": [
            "{Friend} said, \"Let's look together.\" They looked high and low. At last, {friend} "
            "found the {thing} under a bush. \"Here it is!\" {fhe} said.",
            "{Name} asked {his} mom for help. Mom smiled and said, \"Where did you play last?\" "
            "{Name} went back to {place} and found the {thing} right by the bench.",
            "Then {name} saw a little puppy with the {thing} in its mouth. The puppy wanted to "
            "play! {Name} laughed and they played with the {thing} together.",
        ],
        "moral": "If you keep looking and ask for help, you can find what you lost.",
    },
    {
        "trouble": [
            "{Name} was playing with {his} {thing} when it fell and broke. {He} began to cry. "
            "\"My {thing} is broken!\" {he} said.",
            "{Friend} wanted to see the {thing}. {Fhe} pulled it too hard, and it broke. Both "
            "friends felt {sad}.",
        ],
        "fix": [
            "Mom came and looked at the {thing}. \"We can fix it,\" she said. She used some glue, "
            "and soon the {thing} was as good as new.",
            "{Friend} said sorry. Then they found some tape and fixed the {thing} together. It "
            "looked a little funny, but {name} loved it even more.",
            "Dad said, \"Let's make something new.\" They made a new {thing} out of paper and "
            "paint. It was the best one ever.",
        ],
        "moral": "Saying sorry and fixing things together makes friends closer.",
    },
    {
        "trouble": [
            "Suddenly, dark clouds came and it began to rain. {Name} and {friend} were far from "
            "home. \"What do we do?\" asked {friend}.",
            "While they played, big drops of rain started to fall. Thunder went boom! {Name} "
            "felt {sad}.",
        ],
        "fix": [
            "{Name} saw a big tree with wide leaves. They sat under it and stayed dry, telling "
            "funny stories until the rain stopped.",
            "They ran home and played inside. Mom made warm soup, and they built a fort with "
            "blankets. \"Rainy days are fun too!\" said {name}.",
            "{Name} said, \"Let's jump in the puddles!\" They splashed and laughed. When the sun "
            "came back, they saw a big rainbow.",
        ],
        "moral": "Even a rainy day can be a happy day.",
    },
    {
        "trouble": [
            "{Friend} saw the {thing} and asked, \"Can I play with it too?\" But {name} said, "
            "\"No, it is mine!\" {Friend} walked away, feeling {sad}.",
            "{Name} and {friend} both wanted the {thing}. They pulled and pulled. \"It's my "
            "turn!\" they both said.",
        ],
        "fix": [
            "{Name} felt bad. {He} ran after {friend} and said, \"I am sorry. Let's play "
            "together.\" They took turns, and playing was much more fun with two.",
            "Then {name} had an idea. \"You can have it first, and then it is my turn.\" "
            "{Friend} smiled. They shared the {thing} all afternoon.",
        ],
        "moral": "Sharing makes everyone happy.",
    },
    {
        "trouble": [
            "At {place}, {name} saw {friend} sitting all alone. {Friend} looked {sad}. \"Nobody "
            "wants to play with me,\" {fhe} said quietly.",
            "There was a new {friend_kind} at {place}. {Fhe} did not know anyone and stood by "
            "the fence, looking {sad}.",
        ],
        "fix": [
            "{Name} walked over and said, \"Hi, I am {name}. Do you want to play with me?\" "
            "{Friend} smiled a big smile. They played all day.",
            "{Name} shared {his} {thing} and showed {friend} {his} favorite games. Soon {friend} "
            "was laughing too.",
        ],
        "moral": "A kind word can make a new friend.",
    },
    {
        "trouble": [
            "That night, {name} heard a strange noise outside. Scratch, scratch! {He} hid under "
            "the blanket, feeling {sad}.",
            "In {place}, it grew dark, and the trees made long shadows. {Name} was afraid to walk "
            "home.",
        ],
        "fix": [
            "{Name} took a deep breath and looked out the window. It was only a little kitten "
            "that wanted to come in! {Name} gave it some milk, and it purred.",
            "{Friend} held {name}'s hand. \"The dark is just the night coming to sleep,\" {fhe} "
            "said. They walked home together, and {name} was not scared anymore.",
            "Mom came with a lamp and said, \"It is only the wind.\" She gave {name} a big hug, "
            "and {he} fell asleep with a smile.",
        ],
        "moral": "Being brave means trying even when you are scared.",
    },
    {
        "trouble": [
            "{Name} and {friend} played so long that their tummies began to rumble. \"I am so "
            "hungry,\" said {friend}.",
            "{Friend} forgot {fhis} lunch at home. {Fhe} looked at the other children eating and "
            "felt {sad}.",
        ],
        "fix": [
            "{Name} had two red apples in {his} bag. {He} gave one to {friend}. They ate the "
            "sweet apples under the tree.",
            "{Name} opened {his} lunch box and said, \"We can share my cookies.\" {Friend} said, "
            "\"Thank you, {name}! You are a good friend.\"",
        ],
        "moral": "Sharing what you have is a kind thing to do.",
    },
    {
        "trouble": [
            "{Name} wanted to climb to the top of the big hill, but it was very hard. {He} slipped and "
            "fell down. \"I can't do it,\" {he} said.",
            "{Name} was learning to ride a bike. {He} wobbled and fell again and again. {He} felt "
            "{sad} and wanted to stop.",
        ],
        "fix": [
            "{Friend} said, \"Try one more time. I know you can do it!\" {Name} tried again, slow "
            "and careful. This time {he} made it! {He} felt so {glad}.",
            "{Name} did not give up. Every day {he} tried a little more. One day, {he} did it all "
            "by {himself}, and everyone cheered.",
        ],
        "moral": "If you keep trying, you can do hard things.",
    },
    {
        "trouble": [
            "{Name} and {friend} played with mud and paint. Soon there was a big mess all over "
            "the floor. Mom was not happy.",
            "{Name} ran inside with dirty feet and left mud everywhere. \"Oh no,\" said Mom, "
            "\"look at this mess!\"",
        ],
        "fix": [
            "{Name} said, \"I am sorry, Mom. I will clean it up.\" {Friend} helped too. Soon the "
            "floor was clean and shiny, and Mom gave them a big hug.",
            "{Name} got a broom and a cloth. It was hard work, but {he} cleaned it all. Mom said, "
            "\"Thank you for helping. I am proud of you.\"",
        ],
        "moral": "When you make a mess, say sorry and help clean it up.",
    },
    {
        "trouble": [
            "Near {place}, {name} found a little bird on the ground. Its wing was hurt, and it "
            "could not fly.",
            "{Name} heard a tiny meow. A small kitten was lost and crying by the road.",
        ],
        "fix": [
            "{Name} picked it up very gently and took it home. {He} gave it water and a soft bed. "
            "After a few days, it was strong again, and {name} watched it go home, {glad}.",
            "{Name} and {friend} looked all around until they found its mother. The mother was so "
            "happy, and {name} felt warm inside.",
        ],
        "moral": "It is good to help those who are small and need us.",
    },
]
_OPENINGS = [
    "Once upon a time, there was a {kind} named {name}. {He} loved to {hobby}.",
    "One day, a {kind} named {name} went to {place}. {Weather}",
    "There once was a {kind} called {name} who lived near {place}. Every day, {he} liked to "
    "{hobby}.",
    "{Name} was a {kind} with a {thing}. {He} took it everywhere, even to {place}.",
    "Once, in a small town, there lived a {kind} named {name}. {Weather}",
]
_FRIEND_LINES = [
    "{Name} had a good friend, a {friend_kind} named {friend}.",
    "At {place}, {name} met {friend}, a {friend_kind}.",
    "{Name}'s best friend was {friend}, a {friend_kind} who always laughed a lot.",
    "That day, {friend} the {friend_kind} came to play.",
    "\"Hello, {name}!\" called {friend}, a {friend_kind}. \"Can I come with you?\"",
    "{Name} saw {friend} the {friend_kind} and waved. \"Let's play together!\" {he} said.",
]
_ENDINGS = [
    "From that day on, {name} and {friend} were best friends.",
    "{Name} went home with a big smile on {his} face.",
    "They played together until the sun went down.",
    "That night, {name} slept well and dreamed of {place}.",
    "{Name} felt {glad}, and the day ended happily.",
    "And they all lived happily ever after.",
    "\"This was the best day ever!\" said {name}.",
    "\"Let's play again tomorrow,\" said {friend}, and {name} nodded.",
]


def _pronouns(prefix: str, subject: str) -> dict[str, str]:
    forms = {"he": ("he", "his", "him", "himself"), "she": ("she", "her", "her", "herself")}
    he, his, him, himself = forms[subject]
    names = {"he": he, "his": his, "him": him, "himself": himself}
    out = {}
    for key, value in names.items():
        out[prefix + key] = value
        out[(prefix + key).capitalize()] = value.capitalize()
    return out


def _tell_story(rng: random.Random) -> str:
    name, kind, subject = rng.choice(_HEROES)
    friend, friend_kind, friend_subject = rng.choice([h for h in _HEROES if h[0] != name])
    fields = {
        "name": name, "Name": name, "kind": kind, "friend": friend, "Friend": friend,
        "friend_kind": friend_kind, "place": rng.choice(_PLACES), "thing": rng.choice(_THINGS),
        "Weather": rng.choice(_WEATHER), "glad": rng.choice(_GLAD), "sad": rng.choice(_SAD),
        **_pronouns("", subject), **_pronouns("f", friend_subject),
    }
    fields["hobby"] = rng.choice(_HOBBIES).format(**fields)

    problem = rng.choice(_PROBLEMS)
    paragraphs = [
        rng.choice(_OPENINGS).format(**fields) + " " + rng.choice(_FRIEND_LINES).format(**fields),
        rng.choice(problem["trouble"]).format(**fields),
        rng.choice(problem["fix"]).format(**fields) + " " + rng.choice(_ENDINGS).format(**fields),
    ]
    if rng.random() < 0.4:
        paragraphs.append("The lesson is: " + problem["moral"].lower()[0] + problem["moral"][1:])
    return "\n".join(paragraphs)


def make_stories(n: int, seed: int = 0) -> list[str]:
    """``n`` simple children's stories from a seeded generator (the offline corpus).

    Each story has a hero and a friend (children and animals), a place, a thing they care
    about, a small problem with dialogue and how it gets solved, and sometimes a moral.
    Deterministic for a seed, and a prefix of a longer run: ``make_stories(5)`` is
    ``make_stories(10)[:5]``.
    """
    if n < 0:
        raise ValueError(f"n={n}: expected a number of stories >= 0")
    rng = random.Random(seed)
    return [_tell_story(rng) for _ in range(n)]
