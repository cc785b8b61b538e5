-- Makes in the home's slot the home effects a script run in another slot left (prelude's
-- `apply_home`, where each kind is described): where the home has a slot of its own.
-- Args (home.rs): effects (a list, in the order the script left them).
-- Reply: {made = how many}.
for _, e in ipairs(A.effects) do apply_home(e) end
return cjson.encode({ made = #A.effects })
