# Les messages français du portail.
product = medmesh
layout-skip = Aller au contenu
layout-nav = Principal
layout-sign-out = Se déconnecter
layout-signed-in-as = Connecté en tant que

nav-home = Accueil
nav-record = Mon dossier
nav-sharing = Partage
nav-my-data = Mes données
nav-documents = Documents
nav-access-log = Journal des accès
nav-sessions = Sessions

problem-not-found = Introuvable
problem-not-found-detail = Il n’y a rien ici pour vous. Si vous avez suivi un lien, il a peut-être expiré.
problem-wrong-audience = Pas pour ce compte
problem-wrong-audience-detail = Cette page est destinée à un autre type de compte.
problem-unavailable = Indisponible pour le moment
problem-unavailable-detail = Le nœud n’a pas pu répondre. Veuillez réessayer dans un instant.

mydata-title = Mes données
mydata-export = Télécharger mon dossier
mydata-export-intro = Tout votre dossier en un seul Bundle FHIR R4 (JSON), lisible par d’autres applications et services de santé. Le fichier est produit pour vous maintenant et n’est pas conservé sur le nœud.
mydata-export-button = Télécharger mon dossier (FHIR JSON)
mydata-research = Usage pour la recherche
mydata-research-legend = Des chercheurs peuvent-ils utiliser vos données, sans votre nom ?
mydata-research-in = Oui, mes données peuvent servir à la recherche
mydata-research-out = Non, mes données ne doivent pas servir à la recherche
mydata-research-save = Enregistrer mon choix
mydata-research-is-in = Vous avez accepté l’usage pour la recherche le { $date }.
mydata-research-is-out = Vous avez refusé l’usage pour la recherche le { $date }.
mydata-research-never = Vous n’avez pas encore choisi : vos données ne servent pas à la recherche.
problem-forbidden = Ce formulaire a expiré
problem-forbidden-detail = Revenez en arrière, rechargez la page et réessayez.
problem-bad-input = Ce choix n’est pas proposé
problem-bad-input-detail = Revenez en arrière et choisissez une des options affichées.

home-title = Accueil
home-greeting = Bienvenue, { $name }.
home-results = Nouveaux résultats
home-results-none = Aucun résultat pour l’instant.
home-results-more = Tous les résultats et leur évolution
home-documents = Documents récents
home-documents-none = Aucun document pour l’instant.
home-documents-more = Tous les documents
home-document = Document
home-accesses = Derniers accès à votre dossier
home-accesses-none = Personne n’a encore accédé à votre dossier.
home-accesses-more = Le journal complet des accès, vérifié

record-title = Mon dossier
record-conditions = Problèmes de santé
record-conditions-none = Aucun problème de santé enregistré.
record-medications = Médicaments
record-medications-none = Aucun médicament enregistré.
record-allergies = Allergies
record-allergies-none = Aucune allergie enregistrée.
record-immunizations = Vaccinations
record-immunizations-none = Aucune vaccination enregistrée.
record-encounters = Consultations
record-encounters-none = Aucune consultation enregistrée.
record-encounter = Consultation
record-results = Résultats et constantes
record-results-none = Aucun résultat enregistré.
record-results-count = { $count ->
    [one] { $count } résultat
   *[other] { $count } résultats
}
record-value = Valeur
record-date = Date
record-range = Valeurs de référence
record-range-typical = Valeurs usuelles chez l’adulte
record-values = Toutes les valeurs
record-latest = Dernière valeur

chart-title = Évolution : { $name }
chart-description = { $count } valeurs du { $first } au { $last } ; { $abnormal ->
    [0] aucune hors des valeurs de référence.
    [one] une hors des valeurs de référence.
   *[other] { $abnormal } hors des valeurs de référence.
}

sharing-title = Partage
sharing-intro = Ces personnes et organisations peuvent voir votre dossier, et voici pourquoi. Un changement prend effet dès la requête suivante.
sharing-now = Qui peut voir votre dossier aujourd’hui
sharing-past = Accès terminés
sharing-none = Personne.
sharing-who = Qui
sharing-why = Pourquoi
sharing-since = Depuis
sharing-until = Jusqu’au
sharing-open = Sans date de fin
sharing-emergency = Accès d’urgence
sharing-unnamed = { $reference }
why-care-team = Membre de votre équipe de soins
why-general-practitioner = Votre médecin traitant
why-referral = Vous leur avez été adressé
why-encounter = Une consultation avec eux
why-consent = Vous avez donné votre consentement
why-shared = Une de vos règles de partage
why-break-glass = A déclaré une urgence

flag-normal = Normal
flag-low = Bas
flag-high = Élevé
flag-abnormal = Anormal

status-active = Actif
status-recurrence = Récidive
status-relapse = Rechute
status-inactive = Inactif
status-remission = En rémission
status-resolved = Résolu
status-completed = Terminé
status-stopped = Arrêté
status-on-hold = Suspendu
status-cancelled = Annulé
status-entered-in-error = Saisi par erreur
status-not-done = Non fait
status-draft = Brouillon
status-intended = Prévu
status-unknown = Inconnu

criticality-low = Risque faible
criticality-high = Risque élevé
criticality-unable-to-assess = Risque non évalué

action-read = A consulté votre dossier
action-vread = A consulté une version passée
action-search = A cherché dans votre dossier
action-create = A ajouté à votre dossier
action-update = A modifié votre dossier
action-delete = A supprimé de votre dossier
action-read-audit-log = A consulté votre journal des accès
action-export = A exporté votre dossier
action-everything = A consulté tout votre dossier

who-you = Vous
who-account = { $name } ({ $role })
who-service = Service « { $name } »
role-patient = patient
role-practitioner = soignant
role-org-admin = administrateur de l’organisation
role-node-admin = administrateur du nœud
role-researcher = chercheur
action-other = A accédé à votre dossier
action-login = Connexion

datetime-format = { $date } à { $time }
date-format = { $day } { $month } { $year }
month-1 = janv.
month-2 = févr.
month-3 = mars
month-4 = avr.
month-5 = mai
month-6 = juin
month-7 = juil.
month-8 = août
month-9 = sept.
month-10 = oct.
month-11 = nov.
month-12 = déc.
