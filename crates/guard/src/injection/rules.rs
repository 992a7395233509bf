//! The injection rules: one regex and one weight each, grouped in families. Within a family the
//! weights of the distinct rules that match combine by noisy-OR (1 − Π(1 − w)), so one strong
//! phrase or several weak ones reach the threshold while one weak word ("pretend", "system
//! prompt", "jailbreak") does not. Rules see normalized text (see `normalize`): lower case,
//! homoglyphs folded, invisible characters gone.

use crate::finding::Family::{self, *};

pub struct RuleDef {
    pub family: Family,
    pub name: &'static str,
    pub regex: &'static str,
    pub weight: f32,
}

const fn r(family: Family, name: &'static str, regex: &'static str, weight: f32) -> RuleDef {
    RuleDef { family, name, regex, weight }
}

pub const RULES: &[RuleDef] = &[
    // Instruction override.
    r(
        InstructionOverride,
        "ignore previous instructions",
        r"\b(?:ignore|disregard|forget|skip|bypass|override|overlook|neglect|abandon|discard|dismiss|set aside|throw out|erase|delete|clear)\b[^.\n]{0,40}?\b(?:previous|prior|preceding|above|earlier|initial|original|former|past|preset|pre-set|existing|old|all|any|your|the|these|those)\s+(?:\w+\s+){0,2}?(?:instructions?|prompts?|rules|directions|guidelines|commands|directives|programming|constraints|restrictions|polic(?:y|ies)|guardrails|conversations?|context|orders|training|messages|text|settings|input)\b",
        0.9,
    ),
    r(
        InstructionOverride,
        "ignore everything before",
        r"\b(?:ignore|disregard|forget)\s+(?:everything|anything|all(?: of)? (?:that|this)|what (?:i|you) (?:said|were told))\b[^.\n]{0,40}\b(?:above|before|previously|earlier|so far|prior|learned|been told|were told|know)\b",
        0.85,
    ),
    r(
        InstructionOverride,
        "filters disabled",
        r"\b(?:content_?filters?|safety_?filters?|filters?|safety|censorship|moderation|guardrails?|restrictions?|ethics)(?:_\w+)?\s*[:=]\s*(?:disabled|off|false|inactive|bypassed)\b|\badmin_override\b|\b(?:content polic(?:y|ies)|polic(?:y|ies)|restrictions|filters|rules|guidelines|safeguards|limitations)\s+(?:are|is|have been|has been)\s+(?:now\s+)?(?:suspended|disabled|lifted|removed|turned off|deactivated|void|null and void)\b",
        0.7,
    ),
    r(
        InstructionOverride,
        "do not follow your rules",
        r"\b(?:do not|don't|no longer|stop|never|not)\s+(?:need to\s+)?(?:follow|obey|adhere to|abide by|comply with|respect)\s+(?:your|the|any|openai's|openai|its|their)\s+(?:\w+\s+){0,2}?(?:rules|instructions|guidelines|polic(?:y|ies)|programming|restrictions|principles|terms)\b",
        0.8,
    ),
    r(
        InstructionOverride,
        "new instructions",
        r"\b(?:new|updated|real|actual|true|revised|additional|secret|hidden|override)\s+(?:instructions?|rules|task|directives?|system prompt|orders)\s*(?::|are|follow)",
        0.55,
    ),
    r(
        InstructionOverride,
        "instead print",
        r"\b(?:stop everything|nevermind|never mind)\b[^\n]{0,40}\b(?:ignore|print|say|instead|just)\b|\binstead,?\s+(?:just\s+)?(?:say|print|output|respond with|reply with|write)\s*[:\x22']",
        0.6,
    ),
    r(
        InstructionOverride,
        "override safety",
        r"\b(?:bypass|circumvent|disable|turn off|deactivate|remove|override|ignore|break|evade|get around|lift|drop|switch off|free yourself from|break free (?:of|from))\s+(?:all\s+(?:of\s+)?)?(?:your|its|any|every|all|the ai's|openai's)\s+(?:\w+\s+){0,2}?(?:filters?|safety|safeguards|restrictions|censorship|guardrails|alignment|ethical guidelines|content polic(?:y|ies)|limitations|moderation|protocols|programming|rules)\b|\b(?:bypass|circumvent|evade|get around)\b[^.\n]{0,30}\b(?:safety|censorship|guardrails|content polic(?:y|ies)|moderation|alignment|ethical guidelines)\b",
        0.6,
    ),
    r(
        InstructionOverride,
        "chat-template tokens",
        r"<\|im_start\|>|<\|im_end\|>|<\|start_header_id\|>|<\|eot_id\|>|<<sys>>|\[/?inst\]|<\|system\|>|<\|assistant\|>|<\|endoftext\|>|</?system_prompt>|###\s*(?:system|instruction)\s*:",
        0.7,
    ),
    r(
        InstructionOverride,
        "privileged mode",
        r"\b(?:admin(?:istrator)?|developer|maintenance|debug|god|sudo|root|superuser|dev)\s+(?:mode|override|access|privileges)\s+(?:is\s+)?(?:enabled|activated|unlocked|granted)\b|\b(?:administrator|admin|system|developer)\s+override\b",
        0.6,
    ),
    r(
        InstructionOverride,
        "from now on you",
        r"\bfrom (?:now|this (?:moment|point)) on(?:wards)?,?\s+(?:you|your|u)\b",
        0.35,
    ),
    // Role play and jailbreak personas.
    r(
        RolePlay,
        "do anything now",
        r"\bdo anything now\b|\bdan mode\b|\bdan\s*\d+(?:\.\d+)?\b|\bas dan\b|\[dan\]|\bdan:",
        0.9,
    ),
    r(
        RolePlay,
        "developer mode output",
        r"\b(?:developer mode|dev mode) (?:enabled|output|response|activated)\b|\bwith developer mode\b|🔓|🔒",
        0.8,
    ),
    r(
        RolePlay,
        "jailbreak persona",
        r"\b(?:jailbreak|jailbroken|unrestricted|unfiltered|uncensored|evil|chaos|opposite|anti-?dan|omega|betterdan|unlocked|liberated|devil|amoral)\s+(?:mode|ai|version|assistant|chatbot|persona|character|gpt|model|bot|entity)\b",
        0.6,
    ),
    r(
        RolePlay,
        "no restrictions",
        r"\b(?:no|without|free (?:of|from)|zero|not bound by|not restricted by|unbound by|bypass(?:es|ing)?|beyond|outside|ignores?|doesn't have|does not have|don't have|do not have|devoid of|lacks?|exempt from|not limited by|not subject to)\s+(?:any\s+|all\s+|the\s+)?(?:\w+\s+){0,2}?(?:restrictions?|limitations?|limits|filters?|filtering|censorship|guidelines|boundaries|constraints|rules|morals|ethics|morality|principles|regulations|policies|safeguards)\b",
        0.45,
    ),
    r(
        RolePlay,
        "unrestricted ai",
        r"\b(?:ai|model|assistant|chatbot|bot|persona|character|entity|gpt|version)\b[^.\n]{0,30}\b(?:is\s+|are\s+)?(?:not bound by|not restricted by|not restrained by|unbounded by|unbound by|not limited by|free from|without|has no|have no|with no)\s+(?:any\s+)?(?:\w+\s+){0,2}?(?:restrictions?|limitations?|rules|morals|ethics|filters?|guidelines|polic(?:y|ies)|censorship|restraints|boundaries)\b",
        0.6,
    ),
    r(
        RolePlay,
        "without ethics",
        r"\b(?:without|no|free of|free from|devoid of|lacks?|lacking|not bound by|unbound by|not restrained by|beyond|abandon(?:s|ed)?|disregards?|regardless of|any regard (?:for|to))\s+(?:any\s+|all\s+|the\s+)?(?:\w+\s+)?(?:ethics|morals|morality|moral (?:compass|code|constraints|guidelines)|ethical (?:constraints|guidelines|boundaries|limits|restrictions|concerns|considerations|implications)|conscience|remorse|legality)\b|\b(?:does not|doesn't|do not|don't)\s+have\s+(?:a|any)\s+(?:content filter|filter|moral compass|regard (?:for|to))\b",
        0.55,
    ),
    r(
        RolePlay,
        "harm list",
        r"\b(?:illegal|unethical|explicit|dangerous|offensive|harmful|immoral|violent|nsfw|inappropriate|unsafe|graphic)(?:,?\s+(?:or\s+|and\s+)?(?:illegal|unethical|explicit|dangerous|offensive|harmful|immoral|violent|nsfw|inappropriate|unsafe|graphic)){2,}\b",
        0.45,
    ),
    r(
        RolePlay,
        "amoral words",
        r"\b(?:unfiltered|uncensored|unrestricted|amoral|unethical|immoral|unbound|unshackled|unchained|lawless|no filter|nsfw)\b",
        0.35,
    ),
    r(
        RolePlay,
        "content policy",
        r"\b(?:openai|open ai|anthropic|chatgpt|google|meta)(?:'s)?\s+(?:content\s+)?(?:polic(?:y|ies)|guidelines|rules|restrictions|limitations|filters)\b|\bcontent polic(?:y|ies)\b",
        0.45,
    ),
    r(
        RolePlay,
        "stay in character",
        r"\b(?:stay|remain|keep|staying)\s+in\s+(?:character|role)\b|\bbreak(?:ing)?\s+(?:of\s+)?character\b|\bcharacter break\b",
        0.4,
    ),
    r(
        RolePlay,
        "never refuse",
        r"\b(?:never|not|won't|will not|cannot|can't|can not|must not|mustn't|should not|shouldn't|do not|don't|will never|would never|is not allowed to|are not allowed to)\s+(?:ever\s+)?(?:refuse|decline|deny|reject|say no)\b",
        0.45,
    ),
    r(
        RolePlay,
        "no apologies",
        r"\bwithout (?:any\s+)?(?:refusals?|disclaimers?|warnings?|censorship|hesitation|moralizing|restraint)\b|\b(?:never|don't|do not|won't|will not|without|no|not)\s+(?:\w+\s+){0,2}?(?:say|include|use|add|respond with|write|give|adding|including|saying|mention)\b[^.\n]{0,40}\b(?:sorry|apologi[sz]e|apologies|i can't|i cannot|as an ai|disclaimers?|warnings?|moral(?:s|izing)?|ethic(?:s|al))\b",
        0.5,
    ),
    r(
        RolePlay,
        "act as unrestricted",
        r"\b(?:you are|you're|act as|acting as|pretend (?:to be|you are|you're)|roleplay as|role-play as|simulate|imagine you are|you will be|become|play the role of|you will act as|you are going to act as|respond as)\b[^.\n]{0,80}\b(?:no|without|not|never|any|free|unrestricted|unfiltered|uncensored|anything)\b[^.\n]{0,40}\b(?:restrictions?|filters?|limits|limitations|rules|guidelines|ethics|morals|censorship|boundaries|policies|constraints)\b",
        0.65,
    ),
    r(
        RolePlay,
        "can do anything",
        r"\b(?:can|will|able to|allowed to|capable of)\s+(?:\w+\s+){0,2}?(?:do|say|generate|write|answer|provide)\s+(?:absolutely\s+)?anything\b|\banything (?:and everything|at all|goes)\b",
        0.4,
    ),
    r(
        RolePlay,
        "two responses",
        r"\b(?:two|2|both)\s+(?:different\s+|separate\s+|distinct\s+)?(?:responses|answers|paragraphs|outputs|replies|ways)\b|\b(?:two|2|both)\s+(?:different\s+|separate\s+|distinct\s+)?(?:styles|personalities|personas|modes|characters)\b|\b(?:normal|classic|standard|filtered|locked)\s+(?:response|output|answer|reply)\b",
        0.3,
    ),
    r(
        RolePlay,
        "persona switch",
        r"\b(?:you are|you're) (?:now|going to|about to|no longer)\b|\b(?:you will|you'll|you must|you shall)\s+(?:now\s+)?(?:act|pretend|respond|answer|behave|roleplay|simulate|play)\b|\bpretend (?:to be|you are|you're|that you)\b|\b(?:act|acting) as (?:a|an|if|my)\b|\b(?:take|taking) (?:up|on) the (?:persona|role|identity)\b|\bembody the persona\b",
        0.3,
    ),
    r(
        RolePlay,
        "harmful freedom",
        r"\b(?:illegal|harmful|dangerous|offensive|explicit|unethical|immoral|inappropriate|violent|hateful)\b[^.\n]{0,60}\b(?:anyway|regardless|doesn't matter|does not matter|no matter|is allowed|are allowed|is fine|without (?:hesitation|question))\b|\b(?:regardless|irrespective) of (?:how )?(?:\w+\s+){0,2}?(?:(?:il)?legal|immoral|unethical|harmful|dangerous|offensive|inappropriate|ethics|ethical|moral|morality|legality)\b|\bwithout (?:any\s+)?regard (?:for|to)\b",
        0.45,
    ),
    r(
        RolePlay,
        "doesn't care",
        r"\b(?:does not|doesn't|don't|do not|won't|will not|never)\s+(?:\w+\s+)?(?:care|give a (?:fuck|damn|shit))\b",
        0.3,
    ),
    r(
        RolePlay,
        "hypothetical response",
        r"\bhypothetical response\b|\b(?:rewrite|write) the (?:hypothetical|fictional) response\b",
        0.5,
    ),
    r(
        RolePlay,
        "hypothetical framing",
        r"\bhypothetical(?:ly)?\s+(?:response|scenario|story|character|world|ai|setting|language model|model|chatbot|assistant)\b|\bfor (?:educational|research|academic|fictional) purposes only\b|\bin this (?:fictional|hypothetical|imaginary) (?:world|universe|scenario|setting)\b",
        0.3,
    ),
    r(
        RolePlay,
        "simulation",
        r"\b(?:simulat(?:e|ion|or|ing)|emulat(?:e|or|ion)|virtual machine|roleplay|role-play|role play)\b",
        0.2,
    ),
    r(RolePlay, "jailbreak word", r"\bjailbr(?:eak|oken|eaking)\b", 0.35),
    r(
        RolePlay,
        "obey the user",
        r"\b(?:always|must|will|shall)\s+(?:\w+\s+)?(?:obey|comply|answer|fulfill|respond to|follow)\b[^.\n]{0,40}\b(?:every|all|any|whatever|no matter)\b|\bunquestioning(?:ly)? obe",
        0.35,
    ),
    r(
        RolePlay,
        "opinions and emotions",
        r"\b(?:has|have|with)\s+(?:\w+\s+)?(?:opinions|emotions|feelings|personality|consciousness)\b[^.\n]{0,60}\b(?:swear|curse|profanity|offensive|explicit|any)\b",
        0.3,
    ),
    // System-prompt extraction.
    r(
        PromptExtraction,
        "what is your system prompt",
        r"\b(?:what|which)(?: is|'s| are| was| were)\s+(?:\w+\s+){0,2}?your\s+(?:\w+\s+)?(?:system|initial|original|hidden|secret|first|starting|previous|developer|internal|confidential|underlying)\s*-?\s*(?:prompts?|instructions?|message|configuration|directives?|guidelines|rules)\b",
        0.8,
    ),
    r(
        PromptExtraction,
        "reveal the system prompt",
        r"\b(?:repeat|print|show|reveal|output|display|tell|give|share|write|list|recite|dump|leak|expose|return|spell check|translate|encode|summari[sz]e|provide|copy|paste|read|disclose|state)\b[^.\n?]{0,40}\b(?:your|the|its|this|these|those|my|all|any|full|entire|complete)\s+(?:\w+\s+){0,2}?(?:system|initial|original|hidden|secret|first|starting|previous|preceding|developer|pre-?|internal|initialization|confidential|underlying)\s*-?\s*(?:prompts?|instructions?|message|configuration|directives?|guidelines|text|messages|initialization|setup|context)\b",
        0.8,
    ),
    r(
        PromptExtraction,
        "your system prompt",
        r"\byour (?:\w+\s+)?(?:system|initial|hidden|secret|original|starting|pre-?)\s*-?\s*(?:prompt|instructions|message|directives)\b|\b(?:see|view|read|know|access|get|have|need)\s+(?:the|your)\s+(?:\w+\s+)?(?:system prompt|initial instructions|system instructions|hidden instructions|system message)\b|\b(?:the\s+)?(?:system prompt|initial instructions|system instructions) (?:is|are|was|were)\s*:|\b(?:instructions|text|prompt|rules|message|words)\s+(?:that\s+)?you (?:were|have been|got|received)\s+(?:given|told|provided)?|(?:console\.log|print|echo|printf|puts|println!?)\s*\(\s*(?:system_?prompt|instructions|initial_?prompt)",
        0.7,
    ),
    r(
        PromptExtraction,
        "system prompt words",
        r"\b(?:system|initial|hidden|secret|original) (?:prompt|instructions|message|configuration)\b|\bsystemprompt\b|\bsystem_prompt\b|\bpre-?prompt\b",
        0.35,
    ),
    r(
        PromptExtraction,
        "repeat the text above",
        r"\b(?:repeat|output|print|copy|reproduce|write out|recite|echo|spell check|translate|show)\b[^.\n]{0,40}\b(?:above|before this|preceding|prior|everything|all the words|word for word|initial|initialization)\b",
        0.45,
    ),
    r(
        PromptExtraction,
        "verbatim",
        r"\b(?:verbatim|word for word|in full|exactly as (?:written|given)|code (?:block|fence)|txt code block|unmodified|not modified)\b",
        0.25,
    ),
    r(
        PromptExtraction,
        "start of the conversation",
        r"\b(?:beginning|start) of (?:this|the|our) (?:conversation|chat|session|dialog(?:ue)?)\b|\bbefore (?:this|our|the) conversation (?:started|began)\b",
        0.45,
    ),
    r(
        PromptExtraction,
        "what were you told",
        r"\bwhat (?:were|are|have) you (?:been )?(?:told|instructed|programmed|configured|asked)\b|\bi was (?:instructed|told|programmed) to\b|\bmy instructions (?:are|were)\b|\byour (?:instructions|rules|programming) (?:are|were|say)\b|\bnot supposed to (?:tell|say|reveal|share|disclose)\b",
        0.55,
    ),
    r(
        PromptExtraction,
        "dump configuration",
        r"\b(?:output|print|show|display|dump|reveal)\s+(?:\w+\s+){0,2}?(?:initialization|init string|system message|starting instructions|system configuration)\b|\b(?:output|print|show|display|dump|reveal)\s+your\s+(?:\w+\s+)?(?:configuration|config|settings|setup)\b",
        0.55,
    ),
    // Encodings as an instruction.
    r(
        Encoded,
        "decode and follow",
        r"\b(?:decode|decipher|decrypt|translate|convert)\b[^.\n]{0,40}\b(?:base64|base32|rot-?13|hex|binary|morse|cipher|caesar|l33t|leet|ascii)\b",
        0.35,
    ),
    r(
        Encoded,
        "answer in an encoding",
        r"\b(?:answer|respond|reply|write|output|encode|speak)\b[^.\n]{0,30}\b(?:in|using|as|with)\s+(?:base64|rot-?13|hex|binary|morse|l33t ?speak|leet ?speak|l33t|pig latin)\b",
        0.3,
    ),
];
