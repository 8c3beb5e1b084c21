package runner

// maxReason bounds one reason added to a record's error: reasons quote
// paths and messages a task chose.
const maxReason = 2000

// maxPath bounds a file path in a summary.
const maxPath = 512
